"""Picture and sound synthesis for the demo TV catalog (fleet side).

Every clip is drawn from an item's **genre mixture** and its hidden **style vector** ``z``
(4 numbers in [-1, 1]), so that what a content model sees and hears carries the same signal
that drives co-watching in :mod:`models.catalog`:

* genre: each genre has its own look (sports = green pitch with lines and moving players, news =
  blue/grey studio with an anchor and a lower-third ticker, ...) and sound (crowd noise,
  formant-like speech bursts, ...). Component pictures are alpha-blended and component sounds
  summed by the mixture weights.
* ``z[0]`` rotates the hue of the whole picture (about +-35 degrees);
* ``z[1]`` is the pace: motion speed and audio tempo scale by ``2 ** (0.7 * z[1])``;
* ``z[2]`` is the pitch: every tone scales by ``2 ** (0.6 * z[2])``, patterns by
  ``2 ** (0.3 * z[2])``;
* ``z[3]`` is brightness: picture gain ``1 + 0.25 * z[3]`` and a spectral tilt of the sound
  (brighter items have more treble).

Frames are generated for the whole clip at once with vectorised numpy (shape ``(T, H, W, 3)``,
float32 in [0, 1]); encoding is H.264 (libx264, one thread, fixed settings so the bytes are
reproducible) + AAC mono in MP4 via PyAV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

GENRES = ("news", "sports", "cartoons", "nature", "music", "drama", "cooking", "scifi")

WIDTH, HEIGHT, FPS = 160, 120, 12
SAMPLE_RATE = 16000
POSTER_SIZE = (160, 240)  # width, height (portrait card)

# Display colour of each genre (poster bands, plots). RGB 0..255.
GENRE_COLORS = {
    "news": (42, 77, 155),
    "sports": (46, 139, 58),
    "cartoons": (255, 176, 0),
    "nature": (107, 142, 35),
    "music": (194, 24, 91),
    "drama": (93, 64, 55),
    "cooking": (230, 81, 0),
    "scifi": (0, 188, 212),
}

# Fixed x264 settings, one thread. mbtree is off: with it (and B-frames) the same frames encoded
# to different bytes from run to run in this PyAV/x264 build, even on one thread; without it the
# output is byte-for-byte reproducible (checked over repeated runs and across processes).
X264_OPTIONS = {"preset": "veryfast", "crf": "26", "threads": "1", "x264-params": "mbtree=0"}
AAC_BITRATE = 48000


@dataclass(frozen=True)
class ClipSpec:
    """What a clip is generated from.

    Attributes
    ----------
    mixture : np.ndarray, shape (len(GENRES),)
        Genre weights summing to 1.
    style : np.ndarray, shape (4,)
        Hidden content vector ``z`` in [-1, 1] (see module docstring).
    seconds : float
        Clip length (6-10 s in the catalog).
    seed : int
        Per-item seed for the remaining variation (palettes, positions, melodies).
    """

    mixture: np.ndarray
    style: np.ndarray
    seconds: float
    seed: int


# --------------------------------------------------------------------------- pictures
#
# Speed matters (600 clips in a few minutes on two cores), so a genre picture is built from:
# a static layer drawn once at (H, W [+ panning margin], 3); a per-frame pan of that layer by
# fancy indexing; small moving "sprites" painted per frame inside their bounding box only; and
# a few dynamic effects restricted to the rows they touch.


def _c(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32)


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.08) -> np.ndarray:
    return np.clip(_c(rgb) + rng.normal(0.0, amount, 3).astype(np.float32), 0.0, 1.0)


def _xy(pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Static coordinates: ``xa`` (1, W + 2 pad) in picture-height units, ``y`` (H, 1) in [0, 1)."""
    xa = ((np.arange(-pad, WIDTH + pad, dtype=np.float32) + 0.5) / HEIGHT)[None, :]
    y = ((np.arange(HEIGHT, dtype=np.float32) + 0.5) / HEIGHT)[:, None]
    return xa, y


def _layer(color, pad: int = 0) -> np.ndarray:
    out = np.empty((HEIGHT, WIDTH + 2 * pad, 3), dtype=np.float32)
    out[...] = _c(color)
    return out


def _paint(img: np.ndarray, mask: np.ndarray, color) -> None:
    """Paint ``color`` where ``mask`` (broadcastable to ``img.shape[:-1]``) holds."""
    np.copyto(img, _c(color), where=mask[..., None])


def _ellipse(xa, y, cx, cy, rx, ry) -> np.ndarray:
    return ((xa - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0


def _still(layer: np.ndarray, T: int) -> np.ndarray:
    return np.repeat(layer[None], T, axis=0)


def _pan(layer: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """Frames showing ``layer`` (rows, W + 2 pad, 3) shifted left by ``shift_px`` (T,) pixels."""
    pad = (layer.shape[1] - WIDTH) // 2
    s = np.clip(np.round(shift_px).astype(np.int64), -pad, pad)
    out = np.empty((len(s), layer.shape[0], WIDTH, 3), dtype=np.float32)
    for t, off in enumerate((pad + s).tolist()):  # whole-pixel shifts: one slice copy per frame
        out[t] = layer[:, off:off + WIDTH]
    return out


def _sprite(img: np.ndarray, cx, cy, rx: float, ry: float, color, square: bool = False) -> None:
    """Paint a moving ellipse (or box) per frame, touching only its bounding box.

    ``cx`` (in picture-height units, like ``xa``) and ``cy`` may be scalars or (T,) arrays.
    """
    T = img.shape[0]
    cxp = np.broadcast_to(np.asarray(cx, dtype=np.float64) * HEIGHT, (T,))
    cyp = np.broadcast_to(np.asarray(cy, dtype=np.float64) * HEIGHT, (T,))
    rxp, ryp = rx * HEIGHT, ry * HEIGHT
    col = _c(color)
    for t in range(T):
        x0, x1 = max(int(cxp[t] - rxp), 0), min(int(cxp[t] + rxp) + 2, WIDTH)
        y0, y1 = max(int(cyp[t] - ryp), 0), min(int(cyp[t] + ryp) + 2, HEIGHT)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = (np.arange(x0, x1) + 0.5 - cxp[t]) / rxp
        dy = (np.arange(y0, y1) + 0.5 - cyp[t]) / ryp
        if square:
            m = (np.abs(dx)[None, :] < 1.0) & (np.abs(dy)[:, None] < 1.0)
        else:
            m = dx[None, :] ** 2 + dy[:, None] ** 2 < 1.0
        img[t, y0:y1, x0:x1][m] = col


def _field(xa, y, rng: np.random.Generator, n: int, freq: float) -> np.ndarray:
    """A smooth random texture in about [-1, 1]: a sum of ``n`` plane waves."""
    out = np.zeros(np.broadcast_shapes(xa.shape, y.shape), dtype=np.float32)
    for _ in range(n):
        ang = rng.uniform(0, np.pi)
        f = freq * rng.uniform(0.6, 1.6)
        out += np.sin(2 * np.pi * f * (xa * np.cos(ang) + y * np.sin(ang)) + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(n * 0.5)


def _news(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    xa, y = _xy()
    top = _jitter(rng, (0.10, 0.16, 0.38), 0.05)
    bottom = _jitter(rng, (0.45, 0.50, 0.62), 0.05)
    bg = _layer(0.0)
    bg += top + (bottom - top) * y[..., None]
    bg += 0.06 * (np.sin(2 * np.pi * 5 * scale * xa) > 0.6)[..., None]  # studio panels
    ax = 0.67 + rng.uniform(-0.2, 0.2)
    _paint(bg, _ellipse(xa, y, ax, 0.80, 0.30, 0.26), _jitter(rng, (0.12, 0.12, 0.16), 0.04))
    _paint(bg, (y > 0.74) & (y < 0.80) & (xa > -1), _c((0.20, 0.24, 0.34)))  # desk
    bar = (y > 0.80) & (y < 0.93)
    _paint(bg, bar & (xa < 0.24 * WIDTH / HEIGHT), _jitter(rng, (0.78, 0.10, 0.12), 0.05))
    _paint(bg, bar & (xa >= 0.24 * WIDTH / HEIGHT), _c((0.93, 0.93, 0.95)))
    img = _still(bg, T)
    # the anchor's head bobs while speaking
    _sprite(img, ax, 0.43 + 0.008 * np.sin(2 * np.pi * 1.7 * pace * t), 0.085, 0.12,
            _jitter(rng, (0.85, 0.66, 0.55), 0.06))
    # scrolling ticker in the lower third
    r0, r1 = int(0.845 * HEIGHT), int(0.885 * HEIGHT)
    xs = (np.arange(WIDTH, dtype=np.float32) + 0.5) / WIDTH
    tick = (np.sin(2 * np.pi * (14 * xs[None, :] + 0.25 * pace * t[:, None])) > 0.2) & (xs > 0.27)
    _paint(img[:, r0:r1], np.broadcast_to(tick[:, None, :], (T, r1 - r0, WIDTH)), (0.15, 0.15, 0.2))
    return img


def _sports(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    pad = 16
    xa, y = _xy(pad)
    green = _jitter(rng, (0.16, 0.52, 0.18), 0.04)
    stripes = (np.floor(xa * 6 * scale) % 2).astype(np.float32)
    pitch = _layer(0.0, pad)
    pitch += green * (0.88 + 0.2 * stripes)[..., None] * np.ones_like(y)[..., None]
    cx = 0.5 * WIDTH / HEIGHT
    r = np.sqrt((xa - cx) ** 2 + (y - 0.58) ** 2)
    lines = (np.abs(xa - cx) < 0.008) | (np.abs(y - 0.2) < 0.008) | (np.abs(y - 0.96) < 0.008)
    lines = (lines | (np.abs(r - 0.17) < 0.008)) & (y > 0.19)
    _paint(pitch, lines, (0.95, 0.95, 0.95))
    pan = 0.12 * np.sin(2 * np.pi * 0.06 * pace * t + rng.uniform(0, 6.3))  # camera pans, (T,)
    img = _pan(pitch, pan * HEIGHT)
    # crowd stand: flickering speckles
    rc = int(0.18 * HEIGHT)
    speck = rng.random((rc, WIDTH)).astype(np.float32)
    flick = (np.floor(t * 4 * pace) % 2 > 0)[:, None, None]
    shade = np.where(flick, speck, 1 - speck)
    img[:, :rc] = 0.25 + 0.5 * shade[..., None] * _jitter(rng, (0.8, 0.6, 0.5), 0.15)
    kits = rng.permutation(np.array([(0.9, 0.1, 0.1), (0.95, 0.95, 0.95), (0.1, 0.2, 0.85),
                                     (0.95, 0.85, 0.1), (0.1, 0.1, 0.1)], dtype=np.float32))[:2]
    for k in range(10):
        x0, y0 = rng.uniform(0.1, 1.23), rng.uniform(0.3, 0.9)
        w1, w2 = rng.uniform(0.15, 0.6, 2)
        p1, p2 = rng.uniform(0, 6.3, 2)
        x = x0 + 0.18 * np.sin(2 * np.pi * w1 * pace * 0.5 * t + p1) - pan
        yy = y0 + 0.08 * np.sin(2 * np.pi * w2 * pace * 0.5 * t + p2)
        _sprite(img, x, yy, 0.022, 0.045, kits[k % 2])
    bx = 0.65 + 0.3 * np.sin(2 * np.pi * 0.4 * pace * t) - pan
    _sprite(img, bx, 0.6 + 0.1 * np.cos(2 * np.pi * 0.3 * pace * t), 0.012, 0.012, (0.95, 0.95, 0.95))
    return img


_BRIGHT = np.array([(1.0, 0.2, 0.2), (1.0, 0.85, 0.0), (0.2, 0.6, 1.0), (1.0, 0.3, 0.8),
                    (0.3, 0.9, 0.3), (1.0, 0.55, 0.0), (0.6, 0.3, 1.0)], dtype=np.float32)


def _cartoons(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    xa, y = _xy()
    bg = _layer(_BRIGHT[rng.integers(len(_BRIGHT))] * 0.5 + 0.5)
    _paint(bg, y > 0.72 + 0.03 * np.sin(2 * np.pi * 2 * xa), _BRIGHT[rng.integers(len(_BRIGHT))])
    img = _still(bg, T)
    span = WIDTH / HEIGHT
    for k in range(4):
        col = _BRIGHT[rng.integers(len(_BRIGHT))]
        size = rng.uniform(0.07, 0.14) * scale
        v = rng.uniform(0.08, 0.25) * pace * rng.choice([-1, 1])
        x = (rng.uniform(0, span) + v * t) % (span + 0.3) - 0.15
        hop = np.abs(np.sin(2 * np.pi * rng.uniform(0.4, 0.9) * pace * t + rng.uniform(0, 3)))
        yy = 0.72 - size - 0.3 * hop
        sq = k % 2 == 1
        _sprite(img, x, yy, size * 1.15, size * 1.15, (0.05, 0.05, 0.05), square=sq)  # outline
        _sprite(img, x, yy, size, size, col, square=sq)
        for side in (-1, 1):  # eyes: cartoon characters look at you
            _sprite(img, x + side * size * 0.35, yy - size * 0.2, size * 0.18, size * 0.25, (1, 1, 1))
    return img


def _nature(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    drift_px = 0.02 * pace * t * HEIGHT  # slow pan across the landscape
    pad = int(np.ceil(drift_px[-1] / 2)) + 2
    xa, y = _xy(pad)
    kind = rng.integers(3)  # forest, coast, savanna
    coarse, fine = _field(xa, y, rng, 6, 3.0 * scale), _field(xa, y, rng, 4, 9.0 * scale)
    tex = np.clip(0.5 + 0.3 * coarse + 0.15 * fine, 0, 1)
    if kind == 0:
        lo, hi, sky, horizon = _c((0.05, 0.22, 0.05)), _c((0.45, 0.62, 0.20)), _c((0.55, 0.75, 0.95)), 0.18
    elif kind == 1:
        lo, hi, sky, horizon = _c((0.05, 0.25, 0.45)), _c((0.35, 0.65, 0.80)), _c((0.75, 0.85, 0.98)), 0.35
    else:
        lo, hi, sky, horizon = _c((0.40, 0.30, 0.12)), _c((0.80, 0.68, 0.35)), _c((0.60, 0.78, 0.95)), 0.40
    land = lo + (hi - lo) * tex[..., None]
    hz = horizon + 0.04 * np.sin(2 * np.pi * 1.5 * xa)
    sky_img = sky * (0.85 + 0.15 * y[..., None] / horizon) * np.ones_like(xa)[..., None]
    layer = np.where((y < hz)[..., None], sky_img, land).astype(np.float32)
    if kind == 1:  # sand strip
        _paint(layer, y > 0.85 + 0.03 * np.sin(2 * np.pi * xa), (0.85, 0.78, 0.55))
    img = _pan(layer, drift_px - drift_px[-1] / 2)
    bx = (rng.uniform(0, 1.3) + 0.12 * pace * t) % 1.5 - 0.1  # a bird crossing the sky
    _sprite(img, bx, horizon * 0.5 + 0.02 * np.sin(2 * np.pi * 2 * pace * t), 0.025, 0.008, (0.1, 0.1, 0.1))
    return img


def _music(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    xa, y = _xy()
    bpm = rng.uniform(90, 140) * pace
    beat = t * bpm / 60.0
    pulse = np.exp(-5.0 * (beat % 1.0)).astype(np.float32)  # (T,), flashes on the beat
    img = _still(_layer(_jitter(rng, (0.06, 0.02, 0.10), 0.02)), T)
    cols = [_c((1.0, 0.1, 0.8)), _c((0.1, 0.9, 1.0)), _c((1.0, 0.9, 0.1)), _c((0.5, 0.2, 1.0))]
    gy = np.exp(-((y[:, 0] - 0.35) ** 2) / (0.04 * scale)).astype(np.float32)  # (H,)
    for _ in range(3):  # spotlights sweeping; separable Gaussian glow
        col = cols[rng.integers(len(cols))]
        sx = 0.67 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * pace * t + rng.uniform(0, 6.3))
        gx = np.exp(-((xa - sx[:, None]) ** 2) / (0.04 * scale)).astype(np.float32)  # (T, W)
        gx *= (0.35 + 0.65 * pulse)[:, None] * 0.8
        img += (gy[None, :, None] * gx[:, None, :])[..., None] * col
    nb = 12  # equaliser bars
    heights = rng.uniform(0.1, 0.35, nb).astype(np.float32)
    xs = (np.arange(WIDTH) + 0.5) / WIDTH
    bar_idx = np.minimum((xs * nb).astype(np.int32), nb - 1)
    wob = 0.5 + 0.5 * np.sin(np.floor(beat)[:, None] * 1.7 + bar_idx[None, :] * 2.3)
    h = heights[bar_idx][None, :] * (0.4 + 0.6 * pulse)[:, None] * (0.5 + wob)  # (T, W)
    bars = (y[None, :, :] > 1.0 - h[:, None, :]) & (((xs * nb) % 1.0) < 0.75)[None, None, :]
    _paint(img, bars, cols[rng.integers(len(cols))])
    np.clip(img, 0, 1, out=img)
    return img


def _drama(t, rng, pace: float, scale: float) -> np.ndarray:
    pad = 4
    xa, y = _xy(pad)
    warm = rng.random() < 0.5
    base = _c((0.16, 0.12, 0.09)) if warm else _c((0.08, 0.10, 0.14))
    layer = _layer(base, pad)
    layer *= (1.0 - 0.6 * ((xa * HEIGHT / WIDTH - 0.5) ** 2 + (y - 0.5) ** 2))[..., None]  # vignette
    skin = _c((0.42, 0.32, 0.27)) if warm else _c((0.34, 0.32, 0.33))
    for cx in (0.42, 0.92):  # two dim faces, low contrast
        x = cx + rng.uniform(-0.08, 0.08)
        yc = 0.45 + rng.uniform(-0.05, 0.05)
        _paint(layer, _ellipse(xa, y, x, yc + 0.45, 0.2, 0.3), base * 0.5)
        _paint(layer, _ellipse(xa, y, x, yc, 0.11, 0.15), skin)
        for side in (-1, 1):
            _paint(layer, _ellipse(xa, y, x + side * 0.04, yc - 0.03, 0.015, 0.01), base * 0.4)
    img = _pan(layer, 0.02 * HEIGHT * np.sin(2 * np.pi * 0.05 * pace * t))
    img *= (0.92 + 0.08 * np.sin(2 * np.pi * 0.3 * t)).astype(np.float32)[:, None, None, None]  # lamp
    return img


def _cooking(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    xa, y = _xy()
    wood = _jitter(rng, (0.62, 0.38, 0.18), 0.05)
    grain = np.sin(2 * np.pi * (12 * scale * y + 0.6 * np.sin(2 * np.pi * 1.5 * xa)))
    bg = _layer(0.0)
    bg += wood * (0.85 + 0.12 * grain)[..., None]
    cx, cy = 0.67 + rng.uniform(-0.1, 0.1), 0.55
    _paint(bg, _ellipse(xa, y, cx, cy, 0.40, 0.40), (0.55, 0.55, 0.58))
    _paint(bg, _ellipse(xa, y, cx, cy, 0.36, 0.36), (0.18, 0.18, 0.2))
    _paint(bg, (xa > cx + 0.38) & (xa < cx + 0.75) & (np.abs(y - cy) < 0.04), (0.12, 0.1, 0.1))
    img = _still(bg, T)
    foods = np.array([(0.95, 0.8, 0.2), (0.9, 0.45, 0.1), (0.3, 0.7, 0.2), (0.85, 0.2, 0.15),
                      (0.95, 0.92, 0.8)], dtype=np.float32)
    for _ in range(6):  # stirred food
        ang = rng.uniform(0, 2 * np.pi) + 2 * np.pi * 0.15 * pace * t
        rad = rng.uniform(0.05, 0.24)
        food = foods[rng.integers(len(foods))]
        _sprite(img, cx + rad * np.cos(ang), cy + rad * np.sin(ang), 0.05, 0.04, food)
    # steam rising over the top rows
    rs = int(0.4 * HEIGHT)
    rise = 0.05 * t * HEIGHT
    spad = int(np.ceil(rise[-1] / 2)) + 2
    sxa, sy = _xy(spad)
    steam = np.clip(_field(sxa, sy[:rs], rng, 3, 4.0), 0, 1) * 0.25
    alpha = _pan(np.repeat(steam[..., None], 3, axis=2), rise - rise[-1] / 2)
    img[:, :rs] += alpha * (1.0 - img[:, :rs])  # screen-blend towards white
    return img


def _scifi(t, rng, pace: float, scale: float) -> np.ndarray:
    T = len(t)
    xa, y = _xy()
    bg = _layer(_jitter(rng, (0.02, 0.02, 0.07), 0.02))
    neon = [_c((1.0, 0.1, 0.9)), _c((0.1, 1.0, 0.95)), _c((0.4, 0.5, 1.0))][rng.integers(3)]
    r0 = int(0.62 * HEIGHT)
    depth = 1.0 / np.maximum(y[r0:, 0] - 0.58, 1e-3)  # (rows,)
    vl = ((((xa - 0.5 * WIDTH / HEIGHT) * HEIGHT / WIDTH) * depth[:, None] * 0.6 * scale) % 1.0) < 0.08
    _paint(bg[r0:], vl, neon)  # perspective grid, vertical lines
    pr = rng.uniform(0.12, 0.2)
    _paint(bg, _ellipse(xa, y, rng.uniform(0.3, 1.0), rng.uniform(0.15, 0.35), pr, pr),
           _jitter(rng, (0.5, 0.3, 0.6), 0.2) * 0.8)  # planet
    img = _still(bg, T)
    hl = ((depth[None, :] * 0.25 * scale + 0.8 * pace * t[:, None]) % 1.0) < 0.12  # (T, rows) moving
    img[:, r0:][hl] = neon
    # warp stars: set pixels directly, moving out from the centre
    n = 70
    ang = rng.uniform(0, 2 * np.pi, n)
    r = (rng.uniform(0, 1, n)[None, :] + rng.uniform(0.1, 0.3, n)[None, :] * pace * t[:, None]) % 1.0
    xs = np.clip((0.5 + 0.7 * r * np.cos(ang)) * WIDTH, 0, WIDTH - 1).astype(np.int32)
    ys = np.clip((0.4 + 0.7 * r * np.sin(ang)) * HEIGHT, 0, HEIGHT - 1).astype(np.int32)
    img[np.broadcast_to(np.arange(T)[:, None], xs.shape), ys, xs] = 1.0
    return img


PICTURE = {
    "news": _news, "sports": _sports, "cartoons": _cartoons, "nature": _nature,
    "music": _music, "drama": _drama, "cooking": _cooking, "scifi": _scifi,
}


def _color_matrix(degrees: float, gain: float) -> np.ndarray:
    """3x3 matrix that rotates chroma by ``degrees`` in YIQ space (luma kept), then scales by ``gain``."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    a = np.deg2rad(degrees)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return (gain * (np.linalg.inv(to_yiq) @ rot @ to_yiq)).astype(np.float32)


def style_factors(style: np.ndarray) -> dict:
    """The concrete knobs a style vector ``z`` turns (see the module docstring)."""
    z = np.asarray(style, dtype=np.float64)
    return {
        "hue_deg": float(35.0 * z[0]),
        "pace": float(2.0 ** (0.7 * z[1])),
        "pitch": float(2.0 ** (0.6 * z[2])),
        "scale": float(2.0 ** (0.3 * z[2])),
        "gain": float(1.0 + 0.25 * z[3]),
        "tilt": float(0.35 * z[3]),
    }


def n_frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def render_video(spec: ClipSpec) -> np.ndarray:
    """All frames of a clip as uint8 RGB, shape ``(T, HEIGHT, WIDTH, 3)``."""
    f = style_factors(spec.style)
    t = np.arange(n_frames(spec.seconds), dtype=np.float64) / FPS
    out = np.zeros((len(t), HEIGHT, WIDTH, 3), dtype=np.float32)
    for gi, name in enumerate(GENRES):
        w = float(spec.mixture[gi])
        if w <= 0.0:
            continue
        rng = np.random.default_rng([spec.seed, 1, gi])
        out += np.float32(w) * PICTURE[name](t, rng, f["pace"], f["scale"])
    m = _color_matrix(f["hue_deg"], f["gain"] * 255.0)
    # explicit channel sums instead of a BLAS matmul: the same bits on every machine and thread count
    rgb = np.empty((len(t), HEIGHT, WIDTH, 3), dtype=np.uint8)
    for c in range(3):
        ch = out[..., 0] * m[c, 0] + out[..., 1] * m[c, 1] + out[..., 2] * m[c, 2]
        np.clip(ch, 0.0, 255.0, out=ch)
        ch += 0.5
        rgb[..., c] = ch
    return rgb


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 as PyAV's ``yuv420p`` ndarray layout.

    ``frames`` is uint8 RGB ``(..., H, W, 3)``; the result is ``(..., H * 3 // 2, W)``: the Y
    plane, then U and V (each H/2 x W/2) packed row-wise. Done here rather than by swscale
    inside the encoder, so the encoded bytes do not depend on the FFmpeg build's conversion
    code. Decoders assume BT.601 for unflagged SD video.
    """
    f = frames.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    *lead, h, w = y.shape
    def sub(c):  # 2x2 box average, then pack two chroma rows per output row
        c = 0.25 * (c[..., 0::2, 0::2] + c[..., 1::2, 0::2] + c[..., 0::2, 1::2] + c[..., 1::2, 1::2])
        return c.reshape(*lead, h // 4, w)

    u, v = sub(u), sub(v)
    planes = np.concatenate([y, u, v], axis=-2)
    np.clip(planes, 0.0, 255.0, out=planes)
    planes += 0.5
    return planes.astype(np.uint8)


# --------------------------------------------------------------------------- sound


def _fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes with large prime factors are many times slower."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 * (1 << max(0, (-(-n // p35) - 1).bit_length()))
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _shape_noise(rng, n: int, shape_fn) -> np.ndarray:
    """White noise coloured in the frequency domain by ``shape_fn(freqs_hz)``."""
    m = _fft_len(n)
    spec = np.fft.rfft(rng.standard_normal(m))
    freqs = np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE)
    return np.fft.irfft(spec * shape_fn(freqs), m)[:n]


def _env_bursts(t, rate, duty, rng):
    """0/1-ish envelope with bursts at ``rate`` per second, smoothed edges."""
    ph = (t * rate + rng.uniform(0, 1)) % 1.0
    return np.clip((duty - ph) / 0.05, 0, 1) * np.clip(ph / 0.02, 0, 1)


def _a_news(t, rng, pace, pitch):
    f0 = rng.uniform(95, 190) * pitch * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    # syllables ~4/s: formant targets change per syllable
    syl = np.floor(t * 4.2 * pace).astype(np.int64)
    nsyl = int(syl.max()) + 1
    f1 = rng.uniform(300, 800, nsyl)[syl]
    f2 = rng.uniform(900, 2300, nsyl)[syl]
    sig = np.zeros_like(t)
    for h in range(1, 24):
        fh = f0 * h
        amp = np.exp(-((fh - f1) / 150) ** 2) + 0.6 * np.exp(-((fh - f2) / 250) ** 2) + 0.05 / h
        sig += amp * np.sin(h * phase)
    env = _env_bursts(t, 4.2 * pace, 0.75, rng)
    # sentence pauses
    env *= (np.sin(2 * np.pi * 0.25 * pace * t + rng.uniform(0, 6)) > -0.7)
    return sig * env


def _a_sports(t, rng, pace, pitch):
    n = len(t)
    crowd = _shape_noise(rng, n, lambda f: 1.0 / np.sqrt(np.maximum(f, 50)) * (f < 5000))
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.15 * pace * t + rng.uniform(0, 6)) ** 2
    sig = crowd / (np.std(crowd) + 1e-9) * swell
    # referee whistle
    for start in rng.uniform(0, t[-1] - 0.6, 2):
        m = (t > start) & (t < start + 0.4)
        trill = 1 + 0.3 * np.sin(2 * np.pi * 30 * t[m])
        sig[m] += 1.5 * np.sin(2 * np.pi * 2900 * pitch ** 0.3 * t[m]) * trill
    return sig


def _a_cartoons(t, rng, pace, pitch):
    sig = np.zeros_like(t)
    step = 0.3 / pace
    k = 0
    for start in np.arange(rng.uniform(0, step), t[-1], step):
        k += 1
        m = (t >= start) & (t < start + step * 0.9)
        tt = t[m] - start
        f_start = rng.uniform(500, 1400) * pitch
        f = f_start * (1 + rng.choice([-0.5, 0.8]) * tt / (step * 0.9))  # boing sweeps
        ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
        sig[m] += np.sin(ph) * np.exp(-4 * tt / step) + 0.3 * np.sin(2 * ph) * np.exp(-6 * tt / step)
    return sig


def _a_nature(t, rng, pace, pitch):
    n = len(t)
    wind = _shape_noise(rng, n, lambda f: 1.0 / (1.0 + (f / 400.0) ** 2))
    wind = wind / (np.std(wind) + 1e-9) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 6)) ** 2)
    sig = 0.6 * wind
    for start in np.sort(rng.uniform(0, t[-1] - 0.2, int(6 * pace) + 2)):
        m = (t >= start) & (t < start + 0.12)
        tt = t[m] - start
        f = (rng.uniform(2500, 4500) * pitch ** 0.5) * (1 + 0.3 * np.sin(2 * np.pi * 25 * tt))
        sig[m] += 1.2 * np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.sin(np.pi * tt / 0.12)
    return sig


def _a_music(t, rng, pace, pitch):
    bpm = rng.uniform(90, 140) * pace
    beat = t * bpm / 60.0
    bph = beat % 1.0
    root = rng.uniform(110, 220) * pitch
    chords = [(1, 1.25, 1.5), (0.75, 0.94, 1.125), (0.89, 1.12, 1.33), (1, 1.2, 1.5)]
    bar = (np.floor(beat / 4).astype(np.int64)) % len(chords)
    sig = np.zeros_like(t)
    for j in range(3):
        ratio = np.array([c[j] for c in chords])[bar]
        f = root * ratio
        ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
        sig += (np.sin(ph) + 0.4 * np.sin(2 * ph) + 0.2 * np.sin(3 * ph)) * (0.3 + 0.7 * np.exp(-3 * bph))
    kick = np.sin(2 * np.pi * 55 * bph / (bpm / 60.0) * (1 + 2 * np.exp(-20 * bph))) * np.exp(-8 * bph)
    return 0.4 * sig + 1.2 * kick


def _a_drama(t, rng, pace, pitch):
    root = rng.uniform(65, 110) * pitch
    sig = np.zeros_like(t)
    for ratio in (1.0, 1.5, 2.0, 2.4):
        vib = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 6))
        ph = 2 * np.pi * np.cumsum(root * ratio * vib) / SAMPLE_RATE
        sig += np.sin(ph) + 0.3 * np.sin(2 * ph) + 0.15 * np.sin(3 * ph)
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.12 * pace * t + rng.uniform(0, 6)) ** 2
    return sig * swell


def _a_cooking(t, rng, pace, pitch):
    n = len(t)
    hiss = _shape_noise(rng, n, lambda f: (f > 2000) * 1.0)
    hiss = hiss / (np.std(hiss) + 1e-9)
    crackle = (rng.random(n) < 0.004 * pace) * rng.uniform(-4, 4, n)
    sig = 0.5 * hiss * (0.7 + 0.3 * rng.random(n)) + crackle
    for start in rng.uniform(0, t[-1] - 0.5, 3):  # utensil clinks
        m = (t >= start) & (t < start + 0.3)
        tt = t[m] - start
        sig[m] += 2.0 * np.sin(2 * np.pi * 1800 * pitch ** 0.5 * tt) * np.exp(-25 * tt)
    return sig


def _a_scifi(t, rng, pace, pitch):
    lfo = np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * pace * t)
    f = rng.uniform(200, 500) * pitch * 2.0 ** (1.5 * lfo)
    ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    saw = sum(np.sin(k * ph) / k for k in range(1, 9))  # band-limited sawtooth, no aliasing
    drone_ph = 2 * np.pi * rng.uniform(40, 70) * pitch * t
    return 0.6 * saw + 0.8 * np.sin(drone_ph) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))


SOUND = {
    "news": _a_news, "sports": _a_sports, "cartoons": _a_cartoons, "nature": _a_nature,
    "music": _a_music, "drama": _a_drama, "cooking": _a_cooking, "scifi": _a_scifi,
}


def render_audio(spec: ClipSpec) -> np.ndarray:
    """Mono float32 samples at :data:`SAMPLE_RATE`, peak 0.7, same length as the video."""
    f = style_factors(spec.style)
    n = int(round(n_frames(spec.seconds) / FPS * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    out = np.zeros(n, dtype=np.float64)
    for gi, name in enumerate(GENRES):
        w = float(spec.mixture[gi])
        if w <= 0.0:
            continue
        rng = np.random.default_rng([spec.seed, 2, gi])
        s = SOUND[name](t, rng, f["pace"], f["pitch"])
        out += w * s / (np.sqrt(np.mean(s ** 2)) + 1e-9)
    # brightness: spectral tilt around 1 kHz
    m = _fft_len(n)
    spec_ = np.fft.rfft(out, m)
    freqs = np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE)
    spec_ *= np.clip(np.maximum(freqs, 50.0) / 1000.0, 0.05, 8.0) ** f["tilt"]
    out = np.fft.irfft(spec_, m)[:n]
    # 20 ms fades so clips do not click
    fade = min(n // 2, int(0.02 * SAMPLE_RATE))
    ramp = np.linspace(0.0, 1.0, fade)
    out[:fade] *= ramp
    out[n - fade:] *= ramp[::-1]
    peak = np.max(np.abs(out)) + 1e-9
    return (0.7 * out / peak).astype(np.float32)


# --------------------------------------------------------------------------- files


def encode_mp4(path: str, frames: np.ndarray, audio: np.ndarray, *, fps: int = FPS,
               sample_rate: int = SAMPLE_RATE) -> None:
    """Write H.264 (yuv420p) + AAC mono MP4 to ``path`` via a temporary name.

    ``frames`` uint8 RGB ``[T, H, W, 3]`` (even H and W); ``audio`` mono at ``sample_rate``.
    Settings are fixed (see :data:`X264_OPTIONS`, one encoder thread) so the same inputs give
    the same bytes.
    """
    import av

    tmp = f"{path}.tmp"
    container = av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"})
    try:
        v = container.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = dict(X264_OPTIONS)
        v.codec_context.thread_count = 1
        a = container.add_stream("aac", rate=sample_rate)
        a.layout = "mono"
        a.bit_rate = AAC_BITRATE
        for k, yuv in enumerate(rgb_to_yuv420p(frames)):
            vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            vf.pts = k  # explicit timestamps: x264's rate control reads them
            vf.time_base = Fraction(1, fps)
            for packet in v.encode(vf):
                container.mux(packet)
        for packet in v.encode():
            container.mux(packet)
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, :]), format="fltp", layout="mono")
        af.sample_rate = sample_rate
        af.pts = 0
        for packet in a.encode(af):
            container.mux(packet)
        for packet in a.encode(None):
            container.mux(packet)
    finally:
        container.close()
    os.replace(tmp, path)


def write_poster(path: str, frame: np.ndarray, mixture: np.ndarray, title: str) -> None:
    """A portrait PNG card: genre-colour background, a frame, a mixture band and the title."""
    from PIL import Image, ImageDraw, ImageFont

    pw, ph = POSTER_SIZE
    primary = GENRES[int(np.argmax(mixture))]
    col = np.asarray(GENRE_COLORS[primary], dtype=np.float32)
    yy = np.linspace(0.35, 0.9, ph, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(col * yy, (ph, pw, 3))
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    shot = Image.fromarray(frame, "RGB").resize((pw, pw * HEIGHT // WIDTH), Image.BILINEAR)
    img.paste(shot, (0, 24))
    draw = ImageDraw.Draw(img)
    # mixture band: one segment per genre, width proportional to its weight
    y0, y1 = 24 + shot.height + 4, 24 + shot.height + 14
    x = 0.0
    for gi, name in enumerate(GENRES):
        w = float(mixture[gi]) * pw
        if w <= 0:
            continue
        draw.rectangle([int(round(x)), y0, max(int(round(x + w)) - 1, int(round(x))), y1],
                       fill=GENRE_COLORS[name])
        x += w
    font = ImageFont.load_default()
    words, lines, line = title.split(), [], ""
    for word in words:  # naive wrap at ~22 characters
        cand = f"{line} {word}".strip()
        if len(cand) > 22 and line:
            lines.append(line)
            line = word
        else:
            line = cand
    lines.append(line)
    for k, text in enumerate(lines[:4]):
        draw.text((6, y1 + 8 + 14 * k), text, fill=(255, 255, 255), font=font)
    draw.text((6, 6), primary.upper(), fill=(255, 255, 255), font=font)
    tmp = f"{path}.tmp"
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def make_item_media(args: tuple) -> tuple[str, float]:
    """Pool worker: render and write one item's MP4 and poster.

    Parameters
    ----------
    args : tuple
        ``(media_path, poster_path, mixture, style, seconds, seed, title)``.

    Returns
    -------
    (media_path, seconds)
    """
    media_path, poster_path, mixture, style, seconds, seed, title = args
    spec = ClipSpec(np.asarray(mixture, dtype=np.float64), np.asarray(style, dtype=np.float64),
                    float(seconds), int(seed))
    frames = render_video(spec)
    audio = render_audio(spec)
    encode_mp4(media_path, frames, audio)
    write_poster(poster_path, frames[len(frames) // 2], spec.mixture, title)
    return media_path, float(seconds)


def run_jobs(fn, jobs: list, workers: int, *, progress: bool = True, desc: str = "media") -> None:
    """``fn(job)`` for every job, in ``workers`` spawned processes (1: in this one), with a bar."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            for job in jobs:
                fn(job)
                bar.update(1)
        else:
            import multiprocessing as mp

            # spawn: workers start clean (no inherited threads or locks from the parent)
            with mp.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(fn, jobs, chunksize=4):
                    bar.update(1)
    finally:
        bar.close()
