"""The Classify tab: upload a photo, optionally face-first, see the labels and each face's box drawn."""

from __future__ import annotations

from typing import Any

from .backend import ClassifyBackend


def build_classify_tab(gr: Any, backend: ClassifyBackend) -> None:
    """Add the Classify tab's components and events to the current ``gr.Blocks``."""
    with gr.Row():
        with gr.Column():
            model = gr.Textbox(
                value=backend.model or "",
                label=f"Classifier ({backend.task})",
                info="Hub id or local folder (an ONNX export runs on ONNX Runtime)",
            )
            photo = gr.Image(label="Photo", type="filepath", sources=["upload", "clipboard"], elem_id="hfv-photo")
            faces = gr.Checkbox(value=True, label="Face-first: find faces, classify each one")
            top_k = gr.Slider(1, 10, value=2, step=1, label="Labels to show")
            run = gr.Button("Classify", variant="primary", elem_id="hfv-classify")
        with gr.Column():
            annotated = gr.Image(
                label="Result",
                type="pil",
                interactive=False,
                buttons=["download", "fullscreen"],
                elem_id="hfv-annotated",
            )
            labels = gr.Label(label="Labels (whole photo, or the first face)", elem_id="hfv-labels")
            details = gr.JSON(label="All results")

    def classify(model_v, photo_v, faces_v, top_k_v, progress=gr.Progress()):
        if not photo_v:
            raise gr.Error("upload a photo first")
        try:
            progress(0, desc="Loading the classifier")
            image, top, results = backend.classify(
                photo_v, faces=bool(faces_v), top_k=int(top_k_v), model=model_v or None
            )
        except (ValueError, FileNotFoundError, ImportError, OSError) as err:
            raise gr.Error(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
        if faces_v and not results:
            gr.Info("no face found; untick face-first to classify the whole photo")
        return image, top, results

    run.click(classify, [model, photo, faces, top_k], [annotated, labels, details])
