"""ImagePath: an image upload that hands the handler the uploaded file's path, undecoded; ClassChoice and Opacity:
the class dropdown and the opacity slider, whose values reach the app's validators unchecked by Gradio.

Why not plain `gr.Image(type="filepath")`: Gradio still opens the file with PIL in its own
preprocessing (and converts the mode unless `image_mode=None`), so a corrupt, truncated or
oversized upload would fail inside Gradio with a generic error before our checks run. Here the
bytes reach `hub.images.load_image` untouched, which applies the project's checks and messages
(pixel limit, truncation, zero size) and its conversions (16-bit, alpha, EXIF orientation).
The browser widget is Gradio's own Image component (`is_template`).
"""
from __future__ import annotations

import gradio as gr
from gradio import processing_utils


class ImagePath(gr.Image):
    """`gr.Image` whose value, as an input, is the uploaded file's path (str), never decoded here."""

    is_template = True  # use the frontend of gr.Image

    def __init__(self, **kwargs):
        kwargs.update(type="filepath", image_mode=None)
        super().__init__(**kwargs)

    def get_config(self, cls=None):
        """Props read by the frontend, named by gr.Image's signature (this __init__ takes **kwargs)."""
        return super().get_config(cls or gr.Image)

    def preprocess(self, payload):
        """The path of the uploaded file; base64 data URLs are written to the cache as bytes."""
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return processing_utils.save_base64_to_cache(payload.url, self.GRADIO_CACHE)
        if payload.path is None:
            raise gr.Error("the upload has no file; upload the image again")
        return str(payload.path)


class ClassChoice(gr.Dropdown):
    """`gr.Dropdown` whose value reaches the endpoint as sent: the app's validator refuses an unknown class.

    Why: Gradio checks a dropdown's value against its choices in `preprocess`, which also runs inside an event's
    validator, and gradio 6.31 answers an error there with a bare HTTP 400 (its message only in the server log).
    `allow_custom_value=True` would skip the check too, but would type the API parameter as any string, not the
    list of classes.
    """

    is_template = True  # use the frontend of gr.Dropdown

    def preprocess(self, payload):
        return payload


class Opacity(gr.Slider):
    """`gr.Slider` whose value reaches the endpoint as sent: the app's validator refuses one outside 0..1 (see
    `ClassChoice` for why Gradio's own range check must not run first)."""

    is_template = True  # use the frontend of gr.Slider

    def preprocess(self, payload):
        return payload
