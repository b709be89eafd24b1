"""Fleet-side teachers: large pretrained models whose knowledge is distilled into the box's model.

Nothing here ships to the box (``device/`` never imports it; the extra is ``teach``):

* :mod:`models.teachers.text` -- metadata text (title, year, genres, description) -> sentence
  embedding (all-MiniLM-L6-v2 in numpy; WordLlama), the cold-start vectors of
  ``tvrec eval coldstart --text`` and ``tvrec bundle build --text``;
* :mod:`models.teachers.picture` -- keyframes -> EfficientNet-Lite0 ImageNet features (TF);
* :mod:`models.teachers.sound` -- the audio window -> musicnn features (TF1 checkpoint);
* :mod:`models.teachers.cache` -- per-item caches of their outputs;
* :mod:`models.teachers.distill` -- projections to the student's space and the Spearman
  figures of ``tvrec train --teachers``;
* :mod:`models.teachers.weights` -- readers of ``.pth`` and ``.safetensors`` files without
  PyTorch.
"""
