"""Dataset audit at scale: an occlusion map for every image of a folder or manifest, on Ray Data.

"Did the network learn the wolf or the snow?", asked of a whole dataset: ``sensmap audit INPUT --model M
--out DIR`` (or :func:`run_audit`).

* **Input.** A folder of images (searched recursively; an image's label is the name of the folder it is
  in) or a Parquet/CSV manifest with ``image_id``, ``path`` (relative to the manifest) and optional
  ``label`` and box ``x0, y0, x1, y1`` (fractions of the photo's width and height).
* **Pipeline (Ray Data).** The work list → decode and fit to each network's grid on CPU tasks →
  ``map_batches`` with an actor pool: every actor loads each network once from a picklable
  :class:`ModelSpec` (a name or ``.keras`` file plus weights, labels, preprocessing and options — never a
  pickled model; TensorFlow GPU memory growth on; one GPU per actor when the cluster has GPUs) and runs
  :func:`sensmap.sensitivity_map` per image → one ``.npz`` per image and model, written under a temporary
  name and renamed to ``DIR/maps/model=<name>/<image key>.npz``. The maps equal single-machine
  ``sensitivity_map`` results: the actors get the very pixels ``sensitivity_map`` would feed the network.
* **Local or cluster, same code.** Without an address a local Ray is started with enough logical CPUs for
  the actors *and* the decode tasks (``workers + 2`` at least); with ``address`` the cluster is used.
* **Resumable, idempotent.** A rerun skips every image whose ``.npz`` exists (and starts no Ray at all when
  nothing is left); a crash loses only the images in flight; a missing or corrupt image becomes an error
  record (``<image key>.error.json``) and never stops the run — the next run retries it.
* **Index and summary.** ``DIR/index.parquet`` is rebuilt from the files after every run: one row per image
  and model (top-k, target, score, passes, support inside/outside the box, errors). ``summary.png`` and
  ``summary.html`` show, per network, the mean support map on the network grid per predicted class and per
  label, and the images whose support lies mostly outside their box (shortcut suspects); the mean maps
  are kept in ``class_means.npz``. With two or more networks, ``DIR/pairs.parquet`` holds per image and pair
  of networks the agreement of their maps (Spearman, top-20 % IoU, same top-1 class), and the summary
  compares them (see :mod:`.pairs`).

The dashboard's Audit page uses pure functions of :mod:`.index` and :mod:`.summary` (no Ray, no TensorFlow):
:func:`open_audit`, :func:`filter_index`, :func:`class_counts`, :func:`class_mean_map`,
:func:`class_means`, :func:`shortcut_suspects`, :func:`load_image_result`, :func:`class_means_figure`,
:func:`pair_table`, :func:`pairs_of`, :func:`pair_results`, :func:`paired_class_means`, :func:`agreement_figure`.

Folder layout::

    DIR/audit.json                         settings, networks (with file fingerprints), last run
    DIR/maps/model=<name>/<key>.npz        one SensitivityResult per image (metadata["audit"]: the index row)
    DIR/maps/model=<name>/<key>.error.json an image that failed (retried by the next run)
    DIR/index.parquet                      the index, rebuilt from the files
    DIR/pairs.parquet                      per image and pair of networks, the agreement of their maps
    DIR/summary.png, summary.html, class_means.npz

The files of this package, each one concern (a file imports only those above it):

* ``failures.py`` — :class:`AuditError`, the crash tests inject, the line of a worker's error to show.
* ``inputs.py`` — collecting the inputs: folders, manifests, boxes, :class:`AuditItem`, :func:`image_key`.
* ``networks.py`` — :class:`ModelSpec` and :func:`resolve_model`: networks resolved without TensorFlow.
* ``folder.py`` — the audit folder's state: layout, :class:`AuditSettings` and ``audit.json``, the lock,
  atomic writes, the maps already done, and the audit folders the dashboard lists.
* ``index.py`` — the index: each map's numbers, ``index.parquet``, :func:`open_audit`, filters, queries and
  class mean maps.
* ``pairs.py`` — two networks across the dataset: the agreement of their maps per image (``pairs.parquet``).
* ``summary.py`` — the class mean maps and agreement figures, photo thumbnails with maps, and ``summary.png`` /
  ``summary.html`` / ``class_means.npz``.
* ``worker.py`` — what runs in the Ray workers: the decode tasks and the :class:`AuditWorker` actor.
* ``pipeline.py`` — :func:`run_audit`: the Ray session and pipeline, progress and statistics, resuming.
"""

from __future__ import annotations

from .failures import AuditError
from .folder import (
    AUDIT_JSON,
    ERROR_SUFFIX,
    FORMAT_VERSION,
    INDEX_FILE,
    LOCK_FILE,
    MAPS_DIR,
    MEANS_FILE,
    PAIRS_FILE,
    SUMMARY_HTML,
    SUMMARY_PNG,
    TARGET_LABEL,
    AuditSettings,
    audits_dir_from_env,
    list_audit_folders,
)
from .index import (
    SUMMARY_CLASSES,
    SUMMARY_SUSPECTS,
    TOP_K,
    AuditIndex,
    ClassMean,
    box_support,
    class_counts,
    class_mean_map,
    class_means,
    filter_index,
    grid_box,
    load_image_result,
    open_audit,
    rebuild_index,
    shortcut_suspects,
)
from .inputs import (
    BOX_COLUMNS,
    IMAGE_EXTENSIONS,
    MANIFEST_EXTENSIONS,
    MAX_KEY_LENGTH,
    AuditItem,
    collect_inputs,
    image_key,
)
from .networks import ModelSpec, model_slug, resolve_model
from .pairs import (
    MOST_DIFFERENT,
    PAIR_COLUMNS,
    build_pairs,
    model_pairs,
    pair_numbers,
    pair_results,
    pair_table,
    pair_text,
    paired_class_means,
    pairs_of,
)
from .pipeline import ROWS_PER_BLOCK_MAX_BLOCKS, AuditProgress, AuditStats, duration_text, local_cpus, run_audit
from .summary import (
    AGREEMENT_METRICS,
    agreement_figure,
    class_means_figure,
    overlay_thumbnail,
    pair_thumbnails,
    suspect_thumbnail,
    write_summary,
)
from .worker import AuditWorker

__all__ = [
    "AGREEMENT_METRICS",
    "AUDIT_JSON",
    "BOX_COLUMNS",
    "ERROR_SUFFIX",
    "FORMAT_VERSION",
    "IMAGE_EXTENSIONS",
    "INDEX_FILE",
    "LOCK_FILE",
    "MANIFEST_EXTENSIONS",
    "MAPS_DIR",
    "MAX_KEY_LENGTH",
    "MEANS_FILE",
    "MOST_DIFFERENT",
    "PAIRS_FILE",
    "PAIR_COLUMNS",
    "ROWS_PER_BLOCK_MAX_BLOCKS",
    "SUMMARY_CLASSES",
    "SUMMARY_HTML",
    "SUMMARY_PNG",
    "SUMMARY_SUSPECTS",
    "TARGET_LABEL",
    "TOP_K",
    "AuditError",
    "AuditIndex",
    "AuditItem",
    "AuditProgress",
    "AuditSettings",
    "AuditStats",
    "AuditWorker",
    "ClassMean",
    "ModelSpec",
    "agreement_figure",
    "audits_dir_from_env",
    "box_support",
    "build_pairs",
    "class_counts",
    "class_mean_map",
    "class_means",
    "class_means_figure",
    "collect_inputs",
    "duration_text",
    "filter_index",
    "grid_box",
    "image_key",
    "list_audit_folders",
    "load_image_result",
    "local_cpus",
    "model_pairs",
    "model_slug",
    "open_audit",
    "overlay_thumbnail",
    "pair_numbers",
    "pair_results",
    "pair_table",
    "pair_text",
    "pair_thumbnails",
    "paired_class_means",
    "pairs_of",
    "rebuild_index",
    "resolve_model",
    "run_audit",
    "shortcut_suspects",
    "suspect_thumbnail",
    "write_summary",
]
