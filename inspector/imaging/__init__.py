"""Pictures: image files read and checked, heatmaps and region boxes drawn for people.

- ``read``: listing and reading image files, checking frame arrays (``ImageError``)
- ``overlay``: heatmap overlays, region boxes and thumbnails for the UI, the store and reports
"""

from inspector.imaging.overlay import as_bgr, draw_regions, heatmap_overlay, thumbnail
from inspector.imaging.read import IMAGE_SUFFIXES, check_frame, list_images, read_image

__all__ = ["IMAGE_SUFFIXES", "as_bgr", "check_frame", "draw_regions", "heatmap_overlay",
           "list_images", "read_image", "thumbnail"]
