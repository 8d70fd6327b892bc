"""snn2hw: deploy trained spiking networks (TCJA-SNN, GAC + MS-ResNet) to Loihi 2 through Lava."""

__version__ = "0.1.0"
