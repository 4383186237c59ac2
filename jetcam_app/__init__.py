"""jetcam_app: real-time camera inference with honest numbers."""
__version__ = "0.1.0"
