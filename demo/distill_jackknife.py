"""How sure the real-clip distillation figures are: a delete-one-clip jackknife of
Spearman(student, teacher) minus Spearman(no-teacher student, teacher), per branch, on the float
branches (the int8 figures in train_report.json differ by < 0.03).

    .venv/bin/python demo/distill_jackknife.py /tmp/demomodel /tmp/demobase ../shared/data/media \
        > demo/distill_jackknife.json
"""
import json
import sys

import numpy as np
if __name__ == "__main__":
    from models.fusion import branch_embedders, load_model
    from models.teachers.cache import embed_clips_isolated
    from models.teachers.distill import real_clip_inputs, real_media, similarity_spearman
    real = real_media(sys.argv[3])
    stu, cfg, _ = load_model(f"{sys.argv[1]}/model")
    base, _, _ = load_model(f"{sys.argv[2]}/model")
    x = real_clip_inputs(real, cfg)
    feats = {}
    for name, m in (("student", stu), ("no_teacher", base)):
        b = branch_embedders(m)
        feats[name] = {"video": np.asarray(b["video"](x["video_frames"], training=False)),
                       "audio": np.asarray(b["audio"](x["audio_logmel"], training=False))}
    pic, snd = embed_clips_isolated(real["video"] + real["audio"], cfg)
    nv = len(real["video"])
    teach = {"video": pic[:nv], "audio": snd[nv:]}
    out = {}
    for br in ("video", "audio"):
        n = len(teach[br])
        full = {s: similarity_spearman(feats[s][br], teach[br]) for s in feats}
        d_full = full["student"] - full["no_teacher"]
        loo = []
        for k in range(n):
            keep = np.arange(n) != k
            loo.append(similarity_spearman(feats["student"][br][keep], teach[br][keep])
                       - similarity_spearman(feats["no_teacher"][br][keep], teach[br][keep]))
        loo = np.array(loo)
        se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
        out[br] = {"n_clips": n, "float": full, "diff": d_full, "jackknife_se_diff": se,
                   "ci95": [d_full - 1.96 * se, d_full + 1.96 * se]}
    print(json.dumps(out, indent=1))
