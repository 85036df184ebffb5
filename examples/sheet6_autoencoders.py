"""Course sheet 6 with aelab: the rectangle, three architectures, PCA, and the frozen decoder.

Run:  .venv/bin/python examples/sheet6_autoencoders.py [--full]
"""

import sys

import aelab

quick = "--full" not in sys.argv
names = [
    "sheet6-architectures",
    "sheet6-pca",
    "sheet6-decoder-curves",
    "sheet6-memorize",
    "sheet6-frozen-decoder",
    "sheet6-gd-vs-sgd",
]
results = [aelab.studies.get(name).run(quick=quick, seed=0) for name in names]
for result in results:
    print(f"\n{result.name}")
    for finding in result.findings:
        print(f"  - {finding}")
print("\nReport:", aelab.report.write(results, "runs/sheet6").resolve())
