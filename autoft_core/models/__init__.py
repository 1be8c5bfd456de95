"""Models: the embedded digits ResNet, the real-setup loaders, and the pretrained-weights cache."""
