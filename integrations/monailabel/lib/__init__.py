"""The PAM MONAI Label app's library (MONAI Label puts the app folder on sys.path)."""
