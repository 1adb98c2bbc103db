"""Data: dataset indexes, video decoding, clip sampling, transforms and the `tf.data` input pipeline.

Layer: above `keras_bert3d.models` (it uses the models' pure preprocessing functions: `check_preprocessing`,
`crop_offsets`, `normalize` of `keras_bert3d.models.video_preprocessor`), `keras_bert3d.progress` and
`keras_bert3d.validation`; below `keras_bert3d.serving`, `keras_bert3d.training` and `keras_bert3d.cli`, which import
it. Nothing here imports those, nor the package root.

- indexes/ (`build_index`), records (`VideoIndex`, `VideoRecord`), check (`check_videos`, `find_videos`);
- video_container (opening a file, `VideoDecodeError`, `VIDEO_EXTENSIONS`), frame_timing (`probe`, which frame is
  which), video_reader (`read_frames`, `stream_clips`, `stream_frames`), frame_folders (the reference's extracted frames);
- sampling (which frames a clip takes; sampling_ops: the same rules as TF ops), transforms (crops, flips, mixup as
  TF ops), video_sources and pipeline (`make_dataset`), clip_stream (the test protocol a clip at a time), bad_videos
  (`BadVideoCounter`), service (the tf.data service: `start_dispatcher`, `start_worker`, `distribute`);
- jpeg_frames, parallel, tfrecord / tfrecord_writer (`read_tfrecords`, `write_tfrecords`), flow (TV-L1),
  synthetic (the ordered-events dataset).

The modules of the writing jobs (indexes, check, flow, synthetic, tfrecord_writer) import neither TensorFlow nor
Keras when imported, and their worker processes never do: `bert3d index`, `check-videos` and `flow` start at once.
"""
