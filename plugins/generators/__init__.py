"""Built-in generative models: autoregressive (PixelCNN, PixelRNN, Image Transformer), the VAE,
and GANs (GAN, DCGAN)."""
