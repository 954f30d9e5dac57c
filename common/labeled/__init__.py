"""Training with labels: seeding and epochs (training), metrics, Grad-CAM (cam), size/speed and ONNX (model_card),
and data-parallel training under torchrun (distributed)."""
