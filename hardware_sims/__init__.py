"""Hardware simulators: the fixed-point Loihi simulator and the Lava runner."""
