"""lidcvae: LIDC-IDRI chest CT DICOM to 64³ nodule patches, a 3D convolutional VAE, latent embeddings."""

__version__ = "0.2.0"
