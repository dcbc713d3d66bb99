"""LightningModules of the suite (HMR, PyMAF, BiGraph) and their networks."""
