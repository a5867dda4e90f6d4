"""What prefixes are taken of: the transform vocabulary, PCA, the learned adaptor."""
