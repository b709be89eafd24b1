"""Fleet side: learning the co-watch (item-item CF) model and the content model, evaluation,
and the demo catalog generator. May use scipy and TensorFlow; the box never imports it."""
