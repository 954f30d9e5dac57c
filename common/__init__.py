"""CSNAS's shared code, grouped by the pipeline's stages.

    arch/     the DARTS search space (ops, genotypes), the networks built from it, baselines, their size and diagrams
    data/     image files and their cache, labeled dataset layouts and splits, loaders, the search's views, demo lesions
    search/   the label-free search: contrastive candidate training, trial scores, the ask/tell loop, TPE, executors
    labeled/  training with labels: epochs, metrics, Grad-CAM, model card and ONNX, torchrun
    study/    the proxy study: which genotypes, their measurements, statistics, report and figures

At the top are the few modules every stage uses: config (the constants block), runs (run folders, atomic writes),
device (device and precision), memory (step-memory probes), failures (one failure policy), figures (PNG plots),
child (a script run as a child process, stopped with its process group).
"""
