"""Actor-side pieces of ExGRPO: the L_SFT-aux loss and the trainer mode that installs it."""
