"""The offline hyperparameter search (``edgesync hpo``): labelled pretraining data -> GP-EI search -> YAML.

1. **Data** (:mod:`.sources`, :mod:`.regions`, :mod:`.cache`): frames of the pretraining sources only, sampled
   sparsely; the NanoDet teacher proposes labelled regions per frame and the frozen backbone turns them into
   features (:func:`edgesync_ros.models.labelling.propose_and_embed`), cached on disk. A guard refuses every frame
   of the evaluation clips, so evaluation never sees data h was tuned on.
2. **Search** (:mod:`.windows`, :mod:`.pipeline`): each source is a "video" cut into segments of consecutive
   frames; :func:`edgesync_ros.core.hpo.offline_hpo` runs GP-EI per video, averages the optima and refines them on
   mixed segments.
3. **Output** (:mod:`.writer`, :mod:`.report`): the trials as a table, the best h with its provenance in
   ``config/hyperparameters.yaml``; optionally the comparison with online profiling (:mod:`.compare`, Fig. 4).

Why these starting head, trial limits and file layout: ``docs/decisions/hpo-search-setup.md``. No rclpy here.
"""
