"""Published PMO results: the AUC top-10 of eight methods on the 20 objectives molks scores.

Source: the PMO benchmark's results workbook ``Mol_Opt.xlsx``, sheet "AUC Top-10", published with
Gao et al., "Sample Efficiency Matters: A Benchmark for Practical Molecular Optimization", NeurIPS
2022 Datasets and Benchmarks (pmo-benchmark.github.io): the mean over 5 seeds of the AUC of the
top-10 average at a budget of 10,000 oracle calls, rounded to 3 decimals as printed there.

:data:`PUBLISHED_SUM_20` and :data:`PUBLISHED_SUM_23` are the sums the source prints (from its
unrounded numbers, so a sum of the rounded per-objective values here may differ in the last digit):
over the 20 objectives of :data:`PUBLISHED_AUC` and over all 23 (with drd2, gsk3b and jnk3).

>>> PUBLISHED_AUC["qed"]["graph_ga"]
0.94
"""

from __future__ import annotations

__all__ = ["METHODS", "PUBLISHED_AUC", "PUBLISHED_BUDGET", "PUBLISHED_SOURCE", "PUBLISHED_SUM_20", "PUBLISHED_SUM_23"]

PUBLISHED_SOURCE = (
    'Gao et al., "Sample Efficiency Matters: A Benchmark for Practical Molecular Optimization", NeurIPS 2022 '
    "Datasets and Benchmarks; results workbook Mol_Opt.xlsx, sheet \"AUC Top-10\" (mean of 5 seeds, 10,000 oracle calls)"
)
PUBLISHED_BUDGET = 10_000
"""The oracle budget of the published numbers: a run at another budget is not comparable with them."""

METHODS: dict[str, str] = {
    "reinvent": "REINVENT",
    "graph_ga": "Graph GA",
    "gp_bo": "GP BO",
    "smiles_ga": "SMILES GA",
    "selfies_vae_bo": "SELFIES-VAE BO",
    "screening": "Screening",
    "smiles_vae_bo": "SMILES-VAE BO",
    "jt_vae_bo": "JT-VAE BO",
}
"""The methods shown, in the source's order (its ranking by the sum over 23 objectives): key -> name."""

_ROWS: dict[str, tuple[float, ...]] = {
    # objective: reinvent, graph_ga, gp_bo, smiles_ga, selfies_vae_bo, screening, smiles_vae_bo, jt_vae_bo
    "albuterol_similarity": (0.883, 0.839, 0.899, 0.662, 0.495, 0.484, 0.489, 0.485),
    "amlodipine_mpo": (0.635, 0.661, 0.583, 0.549, 0.516, 0.536, 0.534, 0.519),
    "celecoxib_rediscovery": (0.714, 0.630, 0.724, 0.345, 0.326, 0.352, 0.355, 0.299),
    "deco_hop": (0.667, 0.619, 0.630, 0.611, 0.579, 0.590, 0.590, 0.585),
    "fexofenadine_mpo": (0.785, 0.761, 0.723, 0.721, 0.670, 0.666, 0.671, 0.668),
    "isomers_c7h8n2o2": (0.852, 0.862, 0.680, 0.914, 0.325, 0.169, 0.161, 0.103),
    "isomers_c9h10n2o2pf2cl": (0.643, 0.719, 0.470, 0.861, 0.201, 0.106, 0.085, 0.091),
    "median1": (0.357, 0.295, 0.302, 0.192, 0.201, 0.205, 0.203, 0.179),
    "median2": (0.277, 0.274, 0.297, 0.198, 0.185, 0.200, 0.196, 0.180),
    "mestranol_similarity": (0.619, 0.579, 0.627, 0.469, 0.387, 0.410, 0.399, 0.356),
    "osimertinib_mpo": (0.837, 0.832, 0.787, 0.818, 0.766, 0.764, 0.771, 0.775),
    "perindopril_mpo": (0.537, 0.539, 0.494, 0.448, 0.429, 0.446, 0.442, 0.430),
    "qed": (0.941, 0.940, 0.937, 0.941, 0.936, 0.939, 0.939, 0.935),
    "ranolazine_mpo": (0.760, 0.728, 0.736, 0.699, 0.453, 0.412, 0.457, 0.509),
    "scaffold_hop": (0.560, 0.518, 0.549, 0.495, 0.455, 0.472, 0.471, 0.471),
    "sitagliptin_mpo": (0.022, 0.433, 0.187, 0.364, 0.084, 0.023, 0.024, 0.046),
    "thiothixene_rediscovery": (0.534, 0.479, 0.560, 0.316, 0.297, 0.317, 0.318, 0.282),
    "troglitazone_rediscovery": (0.441, 0.390, 0.411, 0.264, 0.244, 0.250, 0.257, 0.237),
    "valsartan_smarts": (0.179, 0.000, 0.000, 0.000, 0.002, 0.000, 0.002, 0.000),
    "zaleplon_mpo": (0.358, 0.347, 0.222, 0.334, 0.207, 0.073, 0.040, 0.126),
}

PUBLISHED_AUC: dict[str, dict[str, float]] = {
    objective: dict(zip(METHODS, values, strict=True)) for objective, values in _ROWS.items()
}
"""objective -> method -> published AUC top-10."""

PUBLISHED_SUM_20: dict[str, float] = dict(
    zip(METHODS, (11.601, 11.444, 10.816, 10.199, 7.759, 7.413, 7.403, 7.278), strict=True)
)
"""method -> the source's sum over the 20 objectives of :data:`PUBLISHED_AUC`."""

PUBLISHED_SUM_23: dict[str, float] = dict(
    zip(METHODS, (14.196, 13.751, 13.156, 12.054, 8.887, 8.635, 8.587, 8.358), strict=True)
)
"""method -> the source's sum over all 23 PMO objectives (drd2, gsk3b and jnk3 included)."""
