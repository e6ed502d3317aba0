"""Streamlit glue shared by the dashboard pages (``app.py`` and ``pages/``).

Only this package, ``app.py`` and ``pages/`` import Streamlit. Pages hold widgets and layout;
everything they share lives here, one concern per file, and this module hands all of it on as
``sensmap.ui.<name>``:

* :mod:`~sensmap.ui.session` — the session-state model: the ``st.session_state`` keys and ``state()``.
* :mod:`~sensmap.ui.text` — Markdown-safe text, errors shown without a traceback, the colour key,
  percentages, wrapped panel titles.
* :mod:`~sensmap.ui.photo_store` — the session's photos: uploads, sample photos, the active photo.
* :mod:`~sensmap.ui.networks` — the network catalogue, the chosen networks A and B, the cached loader.
* :mod:`~sensmap.ui.map_settings` — the Map page's settings and the choices offered.
* :mod:`~sensmap.ui.score_views` — the scores offered for a network, the class views a map's score supports.
* :mod:`~sensmap.ui.costs` — forward passes and estimated time of a map and its faithfulness check.
* :mod:`~sensmap.ui.result_cache` — the session's finished maps and the classes they explain.
* :mod:`~sensmap.ui.pointing` — each photo's pointing-check box and the pointing numbers.
* :mod:`~sensmap.ui.trust` — a map's story, stability, agreement of two maps, the fast-mode warning.
* :mod:`~sensmap.ui.runs` — running maps and checks with a progress bar and a Stop button; stopped runs.
* :mod:`~sensmap.ui.reports` — which maps a report shows, and the session's cached PNG reports.

Nothing is shared between browser sessions except the ``st.cache_resource`` values of
:mod:`~sensmap.ui.networks` (loaded networks) and :mod:`~sensmap.ui.costs` (seconds per pass). Tests
that replace a function replace it in the module that defines it (see the list above).
"""

from __future__ import annotations

from .costs import FAITHFULNESS_RANDOM_ORDERS, FAITHFULNESS_STEPS, Cost, cost_preview, faithfulness_passes
from .map_settings import (
    FILL_CHOICES,
    MODE_CHOICES,
    SCORE_CHOICES,
    SIZE_CHOICES,
    STRIDE_CHOICES,
    MapSettings,
    describe_settings,
    label_for,
    set_settings,
    settings,
)
from .networks import (
    DEFAULT_NETWORK,
    OWN_GROUP,
    READY_GROUP,
    STATUS_TEXT,
    CatalogueEntry,
    NetworkChoice,
    catalogue,
    choice_labels,
    is_loaded,
    load_network,
    load_on_open,
    models_dir_from_env,
    network_choice,
    set_network_choice,
)
from .photo_store import (
    PHOTO_TYPES,
    SAMPLE_PHOTOS,
    THUMBNAIL_SIDE,
    PhotoEntry,
    active_photo,
    add_photo_bytes,
    add_sample_photo,
    add_uploaded_files,
    photos,
    remove_photo,
    sample_licence,
    sample_names,
    set_active_photo,
    show_upload_messages,
    uploader_key,
)
from .pointing import (
    BOX_EDGES,
    apply_pointing,
    box_from_selection,
    box_inputs,
    pointing_box,
    same_box,
    set_pointing_box,
)
from .reports import MAX_REPORTS, report_keys, report_png_cached
from .result_cache import (
    MAX_RESULTS,
    ResultKey,
    last_key,
    result_key,
    result_to_show,
    results,
    same_class,
    set_target,
    store_result,
    target_for,
    target_widget_key,
    top_classes,
)
from .runs import (
    faithfulness_button,
    run_faithfulness_with_progress,
    run_map_with_progress,
    show_stopped_run,
    stop_button,
)
from .score_views import has_classes, no_classes_note, score_choices, score_for, view_note
from .session import (
    K_ACTIVE,
    K_BOX_INPUTS,
    K_BOXES,
    K_LAST,
    K_LOADED,
    K_NETWORK,
    K_PHOTOS,
    K_REPORTS,
    K_RESULTS,
    K_RUNNING,
    K_SETTINGS,
    K_TARGETS,
    K_TOP,
    K_UPLOAD_MESSAGES,
    K_UPLOADER,
)
from .text import COLOUR_KEY, colour_key, percent, plain, show_error, wrap_subplot_titles
from .trust import agreement_numbers, approximate_note, describe_result, stability_numbers, story_text

__all__ = [
    "BOX_EDGES",
    "COLOUR_KEY",
    "FAITHFULNESS_RANDOM_ORDERS",
    "FAITHFULNESS_STEPS",
    "FILL_CHOICES",
    "K_ACTIVE",
    "K_BOXES",
    "K_BOX_INPUTS",
    "K_LAST",
    "K_LOADED",
    "K_NETWORK",
    "K_PHOTOS",
    "K_REPORTS",
    "K_RESULTS",
    "K_RUNNING",
    "K_SETTINGS",
    "K_TARGETS",
    "K_TOP",
    "K_UPLOADER",
    "K_UPLOAD_MESSAGES",
    "MAX_REPORTS",
    "MAX_RESULTS",
    "MODE_CHOICES",
    "OWN_GROUP",
    "PHOTO_TYPES",
    "DEFAULT_NETWORK",
    "READY_GROUP",
    "SAMPLE_PHOTOS",
    "SCORE_CHOICES",
    "SIZE_CHOICES",
    "STATUS_TEXT",
    "STRIDE_CHOICES",
    "THUMBNAIL_SIDE",
    "CatalogueEntry",
    "Cost",
    "MapSettings",
    "NetworkChoice",
    "PhotoEntry",
    "ResultKey",
    "active_photo",
    "add_photo_bytes",
    "add_sample_photo",
    "add_uploaded_files",
    "agreement_numbers",
    "apply_pointing",
    "approximate_note",
    "box_from_selection",
    "box_inputs",
    "catalogue",
    "choice_labels",
    "colour_key",
    "cost_preview",
    "describe_result",
    "describe_settings",
    "faithfulness_button",
    "faithfulness_passes",
    "is_loaded",
    "label_for",
    "last_key",
    "load_network",
    "load_on_open",
    "models_dir_from_env",
    "network_choice",
    "percent",
    "photos",
    "plain",
    "pointing_box",
    "remove_photo",
    "report_keys",
    "report_png_cached",
    "result_key",
    "result_to_show",
    "results",
    "run_faithfulness_with_progress",
    "run_map_with_progress",
    "same_box",
    "same_class",
    "sample_licence",
    "sample_names",
    "set_active_photo",
    "set_network_choice",
    "set_pointing_box",
    "set_settings",
    "set_target",
    "settings",
    "show_error",
    "show_stopped_run",
    "show_upload_messages",
    "stability_numbers",
    "stop_button",
    "store_result",
    "story_text",
    "has_classes",
    "no_classes_note",
    "score_choices",
    "score_for",
    "view_note",
    "target_for",
    "target_widget_key",
    "top_classes",
    "uploader_key",
    "wrap_subplot_titles",
]
