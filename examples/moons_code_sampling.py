"""Two moons by hand with the API: a 1-D bottleneck, a Gaussian mixture on its codes, new points.

Run:  .venv/bin/python examples/moons_code_sampling.py
"""

import aelab
from aelab import data

train, test = data.split(data.moons(2000, noise=0.1, seed=0), test_size=0.25, seed=0)
with aelab.seeded(0):
    model = aelab.Autoencoder(2, 1, hidden_size=64, layers=2)
history = aelab.train_autoencoder(model, train, epochs=300, batch_size=32, lr=3e-3, test=test)
print(
    f"test MSE {aelab.reconstruction_error(model, test.X):.4f} "
    f"(PCA with one component: {aelab.PCA(1).fit(train.X).reconstruction_error(test.X):.4f})"
)

sampler = aelab.CodeSampler(model, n_components="bic", random_state=0).fit(train.X)
points, codes = sampler.sample(1000, seed=1)
quality = aelab.quality.sample_quality(points, test.X)
print(f"BIC chose {sampler.n_components_} components; samples vs held-out data: {quality}")

fig, axes = aelab.plots.new_figure(width=6.0)
ax = axes[0, 0]
ax.scatter(test.X[:, 0], test.X[:, 1], s=8, color="C0", label="held-out points (real)")
ax.scatter(points[:, 0], points[:, 1], s=8, color="C3", label="decoded GMM samples")
ax.set(title="Two moons: points decoded from a GMM on the codes", xlabel="$x_1$", ylabel="$x_2$")
ax.legend()
fig.savefig("moons_samples.png", dpi=110)
print("Figure: moons_samples.png")
