"""The app for programs and agents: every endpoint described and typed, one-line refusals (the validators give
them before the queue), the MCP server (tools listed and called through Gradio's MCP endpoint),
and the file input that takes DICOM in the browser (a synthetic DICOM written here with pydicom).
"""
from __future__ import annotations

import asyncio
import base64
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import ValidationError
from PIL import Image

from hub.images import load_image
from space import handlers
from space.endpoints import Endpoints

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              # gradio 6.31 calls pandas APIs that pandas 3 deprecates, inside its queue: not ours to fix
              pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]
MODEL_ENDPOINTS = ("classify", "gradcam", "gradcam_faithfulness", "scorecam", "scorecam_faithfulness", "compare")


def write_dicom(path: Path, pixels, **tags) -> Path:
    """An uncompressed Secondary Capture DICOM file of `pixels` (None: no pixel data, as a report has none)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    if pixels is not None:
        ds.set_pixel_data(pixels, "MONOCHROME2", 16)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, Path]:
    """A 12-bit CT-like slice with its own window as `slice.dcm` and as an extension-less export `IM0001`, a DICOM
    report without pixels, a text file."""
    out = tmp_path_factory.mktemp("dicom-uploads")
    ramp = (np.add.outer(np.arange(40), np.arange(48)) * 40).astype(np.uint16)  # 0..3480: 12 bits
    files = {name: write_dicom(out / name, ramp, WindowCenter=1500, WindowWidth=2000)
             for name in ("slice.dcm", "IM0001")}
    files["report.dcm"] = write_dicom(out / "report.dcm", None, Modality="SR")
    files["notes.txt"] = out / "notes.txt"
    files["notes.txt"].write_text("not an image, nor a DICOM file\n" * 10)
    return files


def mcp_session(url: str, work):
    """Run `work(session)` on an MCP client session with the app's MCP server (streamable HTTP)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with streamable_http_client(f"{url}gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(run())


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


# ---- descriptions and types ----------------------------------------------------------------------------------

def test_every_endpoint_is_described_with_typed_parameters_named_as_documented(running_app):
    named = Client(running_app.url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in MODEL_ENDPOINTS:
        assert len(named[f"/{name}"]["description"]) > 40, name  # a sentence, not the bare endpoint name
    assert [p["parameter_name"] for p in named["/classify"]["parameters"]] == ["image"]  # as space/README.md says
    for name in ("gradcam", "scorecam", "compare"):
        params = {p["parameter_name"]: p["python_type"]["type"] for p in named[f"/{name}"]["parameters"]}
        assert list(params) == ["image", "target", "opacity"]
        assert params["image"] == "filepath" and params["opacity"] == "float"
        assert params["target"].startswith("Literal['', 'ring', 'cross', 'checker', 'ring vs cross'")  # the classes


# ---- refusals ----------------------------------------------------------------------------------------------------

def test_validators_refuse_in_one_line_what_needs_no_decoding(served, sample_paths, uploads):
    """`Endpoints.valid_*`, the model endpoints' Gradio validators, give the endpoint's own line."""
    api = Endpoints(served)
    image = str(sample_paths[0])
    run = asyncio.run  # async validators: Gradio awaits them on its event loop
    assert run(api.valid_image(image)) == gr.validate(True, "")
    cases = [(run(api.valid_image(None)), "No image: upload one"),
             (run(api.valid_image(str(uploads["notes.txt"]))), "'notes.txt': not an image file"),
             (run(api.valid_explain(str(uploads["report.dcm"]), "", 0.5))[0],
              "'report.dcm': DICOM file has no pixel data"),
             (run(api.valid_explain(image, "tumour", 0.5))[1], "Unknown class 'tumour'; the model's classes are: ring"),
             (run(api.valid_explain(image, "ring vs ring", 0.5))[1], "'A vs B' needs two different classes"),
             (run(api.valid_explain(image, "", 1.5))[2], "Opacity must be between 0 and 1, got 1.5"),
             (run(api.valid_last(None)), "No explanation to measure yet")]
    for result, message in cases:
        assert result["is_valid"] is False and result["message"].startswith(message), result
        assert "\n" not in result["message"]
    assert all(r["is_valid"] for r in run(api.valid_explain(image, "cross vs ring", 0.0)))


def test_every_model_endpoint_is_validated_before_the_queue(running_app):
    validators = {f.api_name: f.validator for f in running_app.demo.fns.values() if f.api_name in MODEL_ENDPOINTS}
    assert set(validators) == set(MODEL_ENDPOINTS) and all(validators.values()), validators


def test_refusals_through_the_api_are_the_endpoints_one_line(running_app, sample_paths, uploads, monkeypatch):
    client = Client(running_app.url, verbose=False)
    image = handle_file(str(sample_paths[0]))
    # refused by the validator, before the queue: the endpoint's own checks (and so the model) never run
    called = []
    original = handlers.check_explain
    monkeypatch.setattr(handlers, "check_explain", lambda *args: called.append(args) or original(*args))
    cases = [((image, "tumour", 0.5), "/scorecam", "- target: Unknown class 'tumour'; the model's classes are: ring"),
             ((image, "", 1.5), "/gradcam", "- opacity: Opacity must be between 0 and 1, got 1.5"),
             ((handle_file(str(uploads["notes.txt"])), "", 0.5), "/compare", "- image: 'notes.txt': not an image file")]
    for args, api_name, line in cases:
        with pytest.raises(ValidationError) as info:
            client.predict(*args, api_name=api_name)
        head, reason = str(info.value).splitlines()  # the client's header, then the endpoint's own line
        assert head == "1 parameter(s) failed validation:" and reason.startswith(line), reason
    with pytest.raises(ValidationError, match="No explanation to measure yet"):
        Client(running_app.url, verbose=False).predict(api_name="/gradcam_faithfulness")
    assert called == []


# ---- MCP -----------------------------------------------------------------------------------------------------

def test_mcp_lists_the_endpoints_as_tools_and_calls_one(running_app, served, sample_paths):
    async def work(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        ok = await session.call_tool("classify", {"image": data_url(sample_paths[0])})
        refused = await session.call_tool("classify", {"image": "data:image/png;base64,"
                                                       + base64.b64encode(b"plain text" * 20).decode()})
        return tools, ok, refused

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # inside the mcp and httpx packages
        tools, ok, refused = mcp_session(running_app.url, work)
    assert set(MODEL_ENDPOINTS) <= set(tools)
    for name in MODEL_ENDPOINTS:
        assert len(tools[name].description) > 40, name
    image = tools["classify"].inputSchema["properties"]["image"]
    assert image["type"] == "string" and image["description"].startswith("an image file")
    assert tools["classify"].inputSchema["required"] == ["image"]
    props = tools["gradcam"].inputSchema["properties"]
    assert set(props) == {"image", "target", "opacity"} and props["opacity"]["type"] == "number"
    assert props["target"]["description"].startswith("the class to explain")

    assert not ok.isError, ok.content
    text = " ".join(part.text for part in ok.content if part.type == "text")
    best = next(iter(handlers.classify(served, str(sample_paths[0]))))  # most likely first
    assert best in text
    assert refused.isError and "not an image file" in " ".join(p.text for p in refused.content if p.type == "text")


# ---- DICOM in the browser: the file input ----------------------------------------------------------------------

def test_a_dicom_file_becomes_the_windowed_png_the_endpoints_read(served, running_app, uploads):
    api = Endpoints(served)
    client = Client(running_app.url, verbose=False)
    for name in ("slice.dcm", "IM0001"):
        png = Path(api.open_file(str(uploads[name])))
        assert png.suffix == ".png" and png.stem == Path(name).stem
        preview = np.asarray(Image.open(png))
        assert np.array_equal(preview, np.asarray(load_image(uploads[name])))  # the file's own window, 8-bit
        assert preview.min() == 0 and preview.max() == 255  # 500..2500 of 0..3480 spans black..white
        # the preview answers as the DICOM file itself does through the API
        from_png = client.predict(handle_file(str(png)), api_name="/classify")
        from_dicom = client.predict(handle_file(str(uploads[name])), api_name="/classify")
        assert from_png["label"] == from_dicom["label"]
        assert ({c["label"]: c["confidence"] for c in from_png["confidences"]}
                == pytest.approx({c["label"]: c["confidence"] for c in from_dicom["confidences"]}, abs=1e-6))
    for name, message in (("notes.txt", "'notes.txt': not an image file"),
                          ("report.dcm", "'report.dcm': DICOM file has no pixel data")):
        with pytest.raises(gr.Error) as info:
            api.open_file(str(uploads[name]))
        assert info.value.message.startswith(message) and "\n" not in info.value.message
