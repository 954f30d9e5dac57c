"""Data: image files decoded once and cached (images; search_images: the search's own), labeled dataset layouts
(layouts), seeded splits and class balance (splits), the train/val/test dataset built from them (datasets), a
class-stratified share of the labels (label_subset), images to pre-train on without any held-out one (unlabeled),
training loaders, and the built-in demo lesions (demo)."""
