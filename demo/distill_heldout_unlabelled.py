"""Distillation measured with some statistical power: Spearman(student, teacher) of each branch's
pairwise similarities on 96 unlabelled recordings of another seed (4,560 pairs) that neither
student trained on, for the distilled and the no-teacher student (float branches).

    .venv/bin/python demo/distill_heldout_unlabelled.py /tmp/demomodel /tmp/demobase /tmp/unlabelled-held \\
        > demo/distill_heldout_unlabelled.json

The recordings are made in the third argument (`tvrec catalog unlabelled --clips 96 --seed
12345`; kept, so a second run only reads them) from the same 22 photographs and SoundFont as the
training set, but other crops, shots and music: this is held-out *media*, not held-out sources.
"""
import json
import sys

import numpy as np

SEED, CLIPS = 12345, 96

if __name__ == "__main__":
    from models.fusion import branch_embedders, load_model, model_inputs
    from models.teachers.distill import similarity_spearman
    from models.teachers.unlabelled import generate_unlabelled, load_recordings

    student_dir, base_dir, held_dir = sys.argv[1:4]
    generate_unlabelled(held_dir, clips=CLIPS, seed=SEED, progress=False)
    _, cfg, _ = load_model(f"{student_dir}/model")
    x, pic, snd = load_recordings(held_dir, cfg, progress=False)
    xi = model_inputs(x["frames"], x["logmel"], cfg)
    out = {"clips": CLIPS, "seed": SEED, "pairs": CLIPS * (CLIPS - 1) // 2}
    for name, d in (("student", student_dir), ("no_teacher", base_dir)):
        b = branch_embedders(load_model(f"{d}/model")[0])
        out[name] = {
            "video": similarity_spearman(np.asarray(b["video"](xi["frames"], training=False)), pic),
            "audio": similarity_spearman(np.asarray(b["audio"](xi["logmel"], training=False)), snd),
        }
    print(json.dumps(out, indent=1))
