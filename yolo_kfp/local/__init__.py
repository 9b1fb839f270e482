"""The whole pipeline on this machine: the kfp.local runner (``yolo-kfp run-local``) and its demo harness
(an S3 server, a synthetic Open Images mirror, the demo's base checkpoint, an MLflow server). Compiling and
submitting import none of it."""
