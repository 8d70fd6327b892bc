"""The model zoo: faithful re-implementations of the official architectures, demo data, training recipes."""
