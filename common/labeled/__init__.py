"""Training with labels, one concept per module: run (one training, data -> model -> epochs -> results: what
train_isic.py and the proxy study run), data (dataset, split, resized copies, loaders), model (architecture, network,
memory probe), epochs (loss, optimizer, one epoch, resume, checkpoints), training (one pass, prediction, seeding,
checkpoint files), results (metrics.json, figures, Grad-CAM, model card, ONNX), submission (predict a folder),
metrics, cam, model_card, pretrain (self-supervised pre-training of the eval network), and the torchrun pieces:
distributed (process group, samplers, gathering) and torchrun (refusals, rank 0 decides, one voice). Few labels:
few_labels (LABEL_FRACTION, a pre-trained start), curve (the label-efficiency curve's grid, table and figure) and
repeats (runs over seeds: mean ± SD, paired bootstrap CI). Comparing finished runs (eval/compare.py): run_groups
(runs read, checked, grouped into models and paired) and comparison (tables, CSVs, accuracy against MACs)."""
