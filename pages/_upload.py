"""The Task page's upload section and the uploaded task it leaves behind (not a page itself).

Uploaded files vanish from their widgets when the user visits another page, so the converted
images are kept in session state under keys of their own; the task is re-built from them
(a few milliseconds) whenever a page needs it. Every name in an upload is the uploader's
text: it reaches the screen only through `services.markdown_text` or plotly's escaping.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import streamlit as st

from metaviz import services
from metaviz.figures import upload_preview
from metaviz.uploads import IMAGE_SUFFIXES, MAX_ZIP_BYTES, ZIP_SUFFIXES, UploadError, UploadedImages, build_task, \
    check_file_name, read_class_files, read_zip

if TYPE_CHECKING:
    from metaviz.checkpoints import Checkpoint
    from metaviz.tasks import Task

    from pages._shared import TaskSettings

SOURCE_KEY = "task_source"  # "sampled" or "uploaded": which task the pages work with
UPLOAD_KEY = "uploaded_images"  # the latest upload, converted: {"label", "signature", "images"}
SAMPLED, UPLOADED = "sampled", "uploaded"
ZIP, BY_CLASS = "A .zip file with one folder per class", "Images, class by class"


def using_upload() -> bool:
    return st.session_state.get(SOURCE_KEY) == UPLOADED


def _stored() -> dict | None:
    return st.session_state.get(UPLOAD_KEY)


def _classes_key(images: UploadedImages) -> str:
    return f"upload_classes_{images.content_sha256[:12]}"


def _store(label: str, signature: str, reader) -> None:
    """Reads an upload (once per content) and keeps the result; a plain message when it is unusable."""
    stored = _stored()
    if stored is not None and stored["signature"] == signature:
        return
    try:
        with st.spinner("Reading and converting your images…"):
            images = reader()
    except UploadError as error:
        st.session_state.pop(UPLOAD_KEY, None)  # never go on with older images after a failed upload
        st.error(f"These files cannot be used: {services.markdown_text(error)}.", icon=":material/error:")
        st.stop()
    st.session_state[UPLOAD_KEY] = {"label": label, "signature": signature, "images": images}


def _zip_input() -> None:
    file = st.file_uploader("Zip file", type=["zip"], key="upload_zip_file",
                            help="One folder per class, named after the class, with that class's images inside "
                                 f"(PNG, JPEG, BMP or GIF). At most {MAX_ZIP_BYTES // 2**20} MB.")
    if file is not None:
        data = file.getvalue()

        def read():
            check_file_name(file.name, ZIP_SUFFIXES, "a zip file")  # the browser's filter can be bypassed
            return read_zip(data)

        _store(f"the zip file {file.name}", hashlib.sha256(data).hexdigest(), read)


def _class_inputs(ways: int) -> None:
    st.caption(f"Name each class and drop its images. This model needs {ways} classes.")
    given = []
    columns = st.columns(min(ways, 5))
    for index in range(ways):
        column = columns[index % len(columns)]
        name = column.text_input(f"Class {index + 1} name", value=f"class {index + 1}", max_chars=60,
                                 key=f"upload_class_name_{index}")
        files = column.file_uploader(f"Images of class {index + 1}", type=[s.strip(".") for s in IMAGE_SUFFIXES],
                                     accept_multiple_files=True, key=f"upload_class_files_{index}")
        given.append((name, [(file.name, file.getvalue()) for file in files or []]))
    if not any(files for _, files in given):
        return
    digest = hashlib.sha256()
    for name, files in given:
        digest.update(name.encode() + b"\0" + b"".join(hashlib.sha256(data).digest() for _, data in files))
    _store("the images you dropped", digest.hexdigest(), lambda: read_class_files(given))


def _chosen_classes(images: UploadedImages, ways: int) -> list[str]:
    """All classes when there are exactly `ways`; the user's pick (kept across pages) when more."""
    names = list(images.class_names)
    if len(names) <= ways:
        return names
    key = _classes_key(images)
    widget = f"{key}_input"
    if widget not in st.session_state:
        st.session_state[widget] = st.session_state.get(key, names[:ways])
    chosen = st.multiselect(f"Your upload has {len(names)} classes; this model tells apart {ways}. Choose {ways}:",
                            names, max_selections=ways, key=widget)
    st.session_state[key] = chosen
    return chosen


def _stop(elsewhere: bool) -> None:
    if elsewhere:  # on another page than the Task page: say where the upload can be fixed
        st.page_link("pages/2_Task.py", label="Go to the Task page to upload or choose images",
                     icon=":material/arrow_back:")
    st.stop()


def uploaded_task(checkpoint: Checkpoint, settings: TaskSettings, elsewhere: bool = False) -> Task:
    """The task built from the kept upload (chosen classes, shots, queries, seed); on any
    problem a plain message and the page stops."""
    stored = _stored()
    if stored is None:
        st.info("No images have been uploaded yet.")
        _stop(elsewhere)
    images: UploadedImages = stored["images"]
    chosen = st.session_state.get(_classes_key(images)) or list(images.class_names)[: checkpoint.ways]
    if len(images.class_names) < checkpoint.ways:
        st.error(f"This model tells apart {checkpoint.ways} classes, and the upload has "
                 f"{services.plural(len(images.class_names), 'class', 'classes')}. Upload images of "
                 f"{checkpoint.ways} classes, or pick a model trained for fewer classes in the sidebar.")
        _stop(elsewhere)
    try:
        return build_task(images, chosen, checkpoint.ways, settings.shots, settings.queries, settings.seed)
    except UploadError as error:
        st.error(f"These images do not make a task for this model yet: {services.markdown_text(error)}.")
    except ValueError as error:
        st.error(f"These images do not make a task: {services.markdown_text(error)}.")
    _stop(elsewhere)


def upload_section(checkpoint: Checkpoint, settings: TaskSettings) -> Task:
    """Upload widgets, the converted images, the class choice; returns the task (or stops)."""
    how = st.radio("How to give the images", [ZIP, BY_CLASS], horizontal=True, key="upload_how",
                   label_visibility="collapsed")
    if how == ZIP:
        _zip_input()
    else:
        _class_inputs(checkpoint.ways)
    stored = _stored()
    if stored is None:
        st.info("Upload a zip file, or drop images class by class, to build a task from your own images. "
                "Each class needs at least one more image than the examples per class.")
        st.stop()
    images: UploadedImages = stored["images"]
    total = sum(images.count(name) for name in images.class_names)
    st.subheader("Your images, as the model sees them")
    st.markdown(f"From {services.markdown_text(stored['label'])}: "
                f"{services.plural(total, 'image')} in {services.plural(len(images.class_names), 'class', 'classes')}"
                ". Each was turned grey, fitted into 28 × 28 pixels, and its strokes told apart from its "
                "background, as was done for the model's training images.")
    st.plotly_chart(upload_preview(images.images_by_class), width="stretch", config={"displayModeBar": False})
    st.caption("If a picture looks wrong here (strokes lost, or the background taken for the drawing), crop it "
               "closer or photograph it on a plain background.")
    if images.notes:
        with st.expander(f"Files left out of the upload ({len(images.notes)}), and why"):
            st.text("\n".join(images.notes))  # st.text shows file names as typed, never as markup
    _chosen_classes(images, checkpoint.ways)
    return uploaded_task(checkpoint, settings)
