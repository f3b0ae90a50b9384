"""The model contract: load, use, explain and publish models trained by `train/`.

    from hub import from_pretrained
    clf = from_pretrained("path/to/model-folder")      # or "org/repo", revision="v2"
    clf.predict("scan.png")                            # {"glioma": 0.91, ...}
"""
from hub.loading import from_pretrained

__all__ = ["from_pretrained"]
