"""Built-in demo data: procedurally drawn dermoscopy-like lesions of ISIC 2019's 8 classes, in its layout."""
