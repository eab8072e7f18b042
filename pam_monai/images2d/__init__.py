"""2D images: propagation across a set of 2D images from a few annotated examples (``set2d``), over one large
image by sliding windows and instance labels (``sliding2d``), and the 2D image files both read and write (``io``:
PNG, JPEG, TIFF and 2D NIfTI, large TIFFs by region). ``pam-monai propagate-2d`` and ``propagate-large`` drive them.
"""
