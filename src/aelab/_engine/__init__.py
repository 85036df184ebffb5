"""The one training engine behind train_autoencoder, train_vae, train_mmd_autoencoder
and train_many (private; the entry points are aelab.train and aelab.ensemble).

config      TrainConfig, History, TrainingDiverged, the divergence rule, seeds, devices
objectives  the Objective protocol and the documented order of every random draw
dispatch    groups members and picks their path: "stack", "vmap" or "loop"
stack       the hand-written stack (Linear/ReLU/residual autoencoders, reconstruction)
functional  the torch.func (vmap) stack for other groups, when present
loop        the autograd loop, one model at a time
torch_ops   the only calls to private torch functions, each with a public fallback
"""
