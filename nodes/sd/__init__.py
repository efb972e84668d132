"""The Stable Diffusion models that the built-in nodes run: U-Net, VAE, text encoders, tokenizer,
checkpoint loading, sampling. No node definitions live here."""
