"""Data: the embedded digits set, the three kinds of shift, and the real CIFAR-10(-C) / BREEDS loaders."""
