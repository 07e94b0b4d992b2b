"""The benchmarks behind `onnxdigits bench`: what docs/benchmarks.md's figures were measured with.

The shared parts: `machine` (what a figure was measured on), `timing` (medians over rounds),
`process` (the CPU and memory of a process tree, from Linux's /proc) and `tables` (Markdown).
One module per workload: `sdk` (the SDK beside a bare onnxruntime session and Keras), `serve`
(the HTTP service under load), `score` (batch scoring), `damage` (accuracy on realistic and
damaged digits) and `normaliser` (the image normaliser's CPU time per image).

Nothing here is imported by `import onnxdigits`; each workload imports its heavy libraries
(Keras, FastAPI, Ray, scikit-learn) itself, when it runs.
"""
