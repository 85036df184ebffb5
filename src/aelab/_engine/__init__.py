"""The one training engine behind train_autoencoder, train_vae, train_mmd_autoencoder
and train_many: objectives, the autograd loop, the vmapped stack, the hand-written stack."""
