"""Fleet side: quantize the content model to int8 TFLite, prove parity, package device bundles."""
