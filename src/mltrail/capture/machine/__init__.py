"""The machine a run used: software environment, hardware, identity."""
