"""The Generate tab: prompt (with the subject-token helper), negative prompt, steps, guidance, seed, size, number of
images, model (registry / local path / URL), optional ControlNet with a control image and its Canny preview,
gallery and download."""

from __future__ import annotations

from typing import Any

from .backend import NO_CONTROLNET, GenerateBackend, GenerateRequest, canny_preview, controlnet_choices, default_size


def _model_choices(models: list[str]) -> list[str]:
    from ..models import list_base_models

    return list(dict.fromkeys([*models, *list_base_models()]))


def build_generate_tab(
    gr: Any, backend: GenerateBackend, models: list[str], controlnets: list[str], defaults: dict[str, Any]
) -> None:
    """Add the Generate tab's components and events to the current ``gr.Blocks``.

    Args:
        gr: the ``gradio`` module.
        backend (`GenerateBackend`): does the work.
        models (`list[str]`): model sources offered first (e.g. ``hfvision ui --model``); registry keys follow.
        controlnets (`list[str]`): extra ControlNets (local folders / Hub ids) offered for every model.
        defaults (`dict`): initial ``steps``, ``guidance``, ``size`` (pixels).
    """
    first_model = models[0] if models else None
    size = defaults.get("size") or default_size(first_model)
    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(
                _model_choices(models),
                value=first_model,
                label="Model",
                allow_custom_value=True,
                info="registry key, local folder / .safetensors file, or http(s) URL",
            )
            with gr.Row():
                token = gr.Textbox(label="Subject token", placeholder="sks", scale=1)
                noun = gr.Textbox(label="Class", placeholder="dog", scale=1)
                insert = gr.Button("Insert subject", scale=1, size="sm")
            prompt = gr.Textbox(
                label="Prompt", lines=2, placeholder="a photo of {token} {class} on the beach", elem_id="hfv-prompt"
            )
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="blurry, low quality")
            with gr.Row():
                steps = gr.Slider(1, 150, value=defaults.get("steps", 25), step=1, label="Steps", elem_id="hfv-steps")
                guidance = gr.Slider(0, 20, value=defaults.get("guidance", 7.5), step=0.5, label="Guidance scale")
            with gr.Row():
                width = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id="hfv-width")
                height = gr.Slider(64, 2048, value=size, step=8, label="Height", elem_id="hfv-height")
            with gr.Row():
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
                count = gr.Slider(1, 8, value=1, step=1, label="Number of images")
            with gr.Accordion("ControlNet", open=False):
                controlnet = gr.Dropdown(
                    controlnet_choices(first_model, controlnets),
                    value=NO_CONTROLNET,
                    label="ControlNet",
                    allow_custom_value=True,
                    info="compatible with the model's family; or a local folder / Hub id",
                )
                scale = gr.Slider(0, 2, value=1.0, step=0.05, label="Conditioning scale")
                with gr.Row():
                    control_image = gr.Image(label="Control photo", type="pil", sources=["upload", "clipboard"])
                    edges = gr.Image(label="Canny preview (the condition)", type="pil", interactive=False)
                with gr.Row():
                    low = gr.Slider(0, 255, value=100, step=1, label="Canny low threshold")
                    high = gr.Slider(0, 255, value=200, step=1, label="Canny high threshold")
            run = gr.Button("Generate", variant="primary", elem_id="hfv-generate")
        with gr.Column(scale=2):
            gallery = gr.Gallery(
                label="Images", columns=2, buttons=["download", "download_all", "fullscreen"], elem_id="hfv-gallery"
            )
            info = gr.Markdown(elem_id="hfv-generate-info")
            files = gr.File(label="Download PNGs", file_count="multiple", interactive=False)

    def insert_subject(text, token_value, noun_value):
        subject = " ".join(v.strip() for v in (token_value, noun_value) if v and v.strip()) or "{token} {class}"
        return f"{text.rstrip()} {subject}".strip() if text else f"a photo of {subject}"

    def on_model_change(source):
        return gr.Dropdown(choices=controlnet_choices(source, controlnets), value=NO_CONTROLNET)

    def generate(
        model_v,
        prompt_v,
        negative_v,
        steps_v,
        guidance_v,
        seed_v,
        width_v,
        height_v,
        count_v,
        token_v,
        noun_v,
        controlnet_v,
        scale_v,
        control_v,
        low_v,
        high_v,
        progress=gr.Progress(),
    ):
        try:
            condition = (
                canny_preview(control_v, low_v, high_v) if controlnet_v not in (None, "", NO_CONTROLNET) else None
            )
            request = GenerateRequest(
                model=model_v,
                prompt=prompt_v,
                negative_prompt=negative_v or "",
                num_inference_steps=int(steps_v),
                guidance_scale=float(guidance_v),
                seed=int(seed_v if seed_v is not None else -1),
                width=int(width_v),
                height=int(height_v),
                num_images=int(count_v),
                token=token_v or "",
                class_noun=noun_v or "",
                controlnet=controlnet_v or NO_CONTROLNET,
                control_image=condition,
                controlnet_scale=float(scale_v),
            )
            progress(0, desc=f"Loading {model_v}")
            images, paths, used_seed = backend.generate(
                request, progress=lambda step, total: progress((step, total), desc="Denoising", unit="steps")
            )
        except (ValueError, FileNotFoundError, ImportError, OSError) as err:
            raise gr.Error(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
        token_used, noun_used = backend.subject()
        note = f" · trained subject: `{token_used} {noun_used}`" if token_used else ""
        caption = f"seed {used_seed}"
        return (
            [(img, f"{caption} #{i}") for i, img in enumerate(images)],
            f"{len(images)} image(s), seed **{used_seed}**, {request.width}x{request.height}, "
            f"{request.num_inference_steps} steps{note}",
            paths,
        )

    insert.click(insert_subject, [prompt, token, noun], prompt)
    model.change(on_model_change, model, controlnet)
    for trigger in (control_image.change, low.release, high.release):
        trigger(canny_preview, [control_image, low, high], edges)
    inputs = [
        model,
        prompt,
        negative,
        steps,
        guidance,
        seed,
        width,
        height,
        count,
        token,
        noun,
        controlnet,
        scale,
        control_image,
        low,
        high,
    ]
    run.click(generate, inputs, [gallery, info, files])
    prompt.submit(generate, inputs, [gallery, info, files])
