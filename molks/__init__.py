"""molks: grammar autoencoders with a Gaussian-mixture latent space."""
