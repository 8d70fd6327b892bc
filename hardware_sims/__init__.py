"""Everything that executes a deployment: Loihi 2 formats and Lava's fixed-point arithmetic, the fixed-point
simulator and the Lava driver (two chip runners, one interface), the host-segment runner, and `runner`, which runs a
deployment's segments in order."""
