"""The DARTS search space (ops, genotypes), the networks built from a genotype, hand-designed baselines, a
network's size and its cell diagrams."""
