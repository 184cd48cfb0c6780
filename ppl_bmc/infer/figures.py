"""Figures of a fit that scale with the number of sites: traces, ranks, points and maps.

Every function returns a matplotlib ``Figure`` built with plain matplotlib (no ArviZ plotting,
so both ArviZ versions draw the same figures and no subplot limit applies).  A figure shows
at most ``max_panels`` scalar elements: all of them for small models, else the ones chosen by
:func:`pick_elements` (e.g. the field cells that mix worst), named in each panel.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np

#: Scalar elements drawn by default in one trace/rank figure.
MAX_PANELS = 6
_TRUTH_STYLE = {"color": "crimson", "ls": "--", "lw": 1.5}


def elements(post, var_names=None) -> list[tuple[str, str, tuple]]:
    """``[(label, site, index)]`` of every scalar element of the sites ``var_names`` (default
    all) of a posterior ``xarray.Dataset`` with dims ``(chain, draw, ...)``; labels are
    ``site`` or ``site[i, j]`` as in :func:`ppl_bmc.infer.summary`."""
    out = []
    for name in var_names or list(post.data_vars):
        shape = post[name].shape[2:]
        for idx in np.ndindex(*shape):
            out.append((name + (f"[{', '.join(str(i) for i in idx)}]" if idx else ""), name, tuple(idx)))
    return out


def parse_label(label: str):
    """``(site, index)`` from a summary label ``site[i, j]`` (None if it is not of that form)."""
    m = re.fullmatch(r"(.+?)(?:\[([0-9,\s]*)\])?", str(label))
    if m is None:
        return None
    idx = tuple(int(i) for i in m.group(2).split(",")) if m.group(2) else ()
    return m.group(1), idx


def pick_elements(items, scores=None, max_panels: int = MAX_PANELS):
    """All ``items`` when there are at most ``max_panels``, else the ``max_panels`` with the
    largest ``scores`` (a sequence aligned with ``items``; NaN last), in decreasing order."""
    if len(items) <= max_panels:
        return list(items)
    scores = np.asarray(scores if scores is not None else np.zeros(len(items)), dtype=float)
    order = np.argsort(np.where(np.isfinite(scores), -scores, np.inf), kind="stable")
    return [items[i] for i in order[:max_panels]]


def _label(label, labels=None, units=None, site=None, idx=()):
    text = label
    names = (labels or {}).get(site)
    if names is not None:
        name = names if isinstance(names, str) else (names[idx[0]] if idx and len(idx) == 1 and idx[0] < len(names) else None)
        if name:
            text = f"{label} = {name}"
    unit = (units or {}).get(site)
    return f"{text} ({unit})" if unit else text


def _truth_value(truth, site, idx):
    if not truth or site not in truth:
        return None
    value = np.asarray(truth[site], dtype=float)
    try:
        v = float(value[idx]) if idx else float(value.reshape(-1)[0]) if value.size == 1 else None
    except (IndexError, ValueError):
        return None
    return v if v is not None and np.isfinite(v) else None


#: Characters of the medium font (10 pt, ~5.5 pt a character on average) per inch of figure
#: width, with a margin: a longer title is wrapped rather than cut at the figure's edges.
TITLE_CHARS_PER_INCH = 12


def _header(fig, title, axes_with_legend, height_in):
    """Title on the first lines (wrapped to the figure's width), the legend below it, the panels
    below that (no overlap)."""
    lines = textwrap.wrap(title, width=max(int(fig.get_figwidth() * TITLE_CHARS_PER_INCH), 30)) or [""]
    extra = 0.2 * (len(lines) - 1)  # inches per extra title line
    handles, names = axes_with_legend.get_legend_handles_labels()
    fig.suptitle("\n".join(lines), x=0.01, y=1 - 0.12 / height_in, ha="left", va="top", fontsize="medium")
    if handles:
        fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 1 - (0.38 + extra) / height_in),
                   ncol=min(len(names), 6), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.7 + extra) / height_in))


def trace_figure(post, items, *, truth=None, labels=None, units=None, title=None):
    """Density (per chain) and trace (per chain) of each element in ``items`` (from
    :func:`elements`), one row each; the truth (``truth[site][index]``) as a dashed line."""
    import matplotlib.pyplot as plt

    n = max(len(items), 1)
    fig, axes = plt.subplots(n, 2, figsize=(10, 2.1 * n + 0.9), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2]})
    n_chain = post.sizes["chain"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (label, site, idx) in enumerate(items):
        values = np.asarray(post[site].values)[(slice(None), slice(None)) + idx]
        name = _label(label, labels, units, site, idx)
        lo, hi = np.nanmin(values), np.nanmax(values)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-9, 30)
        for c in range(n_chain):
            color = colors[c % len(colors)]
            name_c = f"chain {c}" if n_chain > 1 else "draws"
            axes[row, 0].hist(values[c], bins=bins, histtype="step", density=True, color=color, label=name_c)
            axes[row, 1].plot(values[c], lw=0.6, color=color, label=name_c)
        t = _truth_value(truth, site, idx)
        if t is not None:
            axes[row, 0].axvline(t, **_TRUTH_STYLE, label="truth")
            axes[row, 1].axhline(t, **_TRUTH_STYLE, label="truth")
        axes[row, 0].set_xlabel(name)
        axes[row, 0].set_ylabel("density")
        axes[row, 1].set_title(name, loc="left", fontsize="medium")
        axes[row, 1].set_ylabel("value")
        axes[row, 1].set_xlabel("draw")
    _header(fig, title or "posterior: distribution and trace per chain", axes[0, 1], 2.1 * n + 0.9)
    return fig


def rank_figure(post, items, *, labels=None, units=None, title=None):
    """Rank histograms per chain (ranks of all draws pooled over chains): flat when the chains
    sample the same distribution.  The dotted band is the 94 % range of a uniform histogram."""
    import matplotlib.pyplot as plt

    n = max(len(items), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.7 * n + 0.9), squeeze=False)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    n_bins = int(np.clip(n_draw // 10, 5, 20))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (label, site, idx) in enumerate(items):
        ax = axes[row, 0]
        values = np.asarray(post[site].values)[(slice(None), slice(None)) + idx]
        ranks = values.ravel().argsort(kind="stable").argsort(kind="stable").reshape(values.shape)
        edges = np.linspace(0, n_chain * n_draw, n_bins + 1)
        width = (edges[1] - edges[0]) / (n_chain + 1)
        for c in range(n_chain):
            counts, _ = np.histogram(ranks[c], bins=edges)
            ax.bar(edges[:-1] + (c + 0.5) * width, counts, width=width, color=colors[c % len(colors)], label=f"chain {c}")
        expect = n_draw / n_bins
        sd = np.sqrt(expect * (1 - 1 / n_bins))
        ax.axhline(expect, color="k", lw=1, label="uniform")
        for s in (-1.88, 1.88):
            ax.axhline(expect + s * sd, color="k", lw=0.8, ls=":")
        ax.set_ylabel("draws per bin")
        ax.set_title(_label(label, labels, units, site, idx), fontsize="medium", loc="left")
    axes[-1, 0].set_xlabel("rank of the draw among all chains")
    _header(fig, title or "rank histograms per chain", axes[0, 0], 1.7 * n + 0.9)
    return fig


def point_figure(points, *, truth=None, labels=None, units=None, title=None):
    """One panel per element: a point estimate with its sd (thick) and 94 % interval (thin),
    the truth as a dashed line.  ``points``: ``[(label, site, index, value, sd, lo, hi)]``
    (``sd``/``lo``/``hi`` may be None)."""
    import matplotlib.pyplot as plt

    n = max(len(points), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.25 * n + 1.0), squeeze=False)
    for row, (label, site, idx, value, sd, lo, hi) in enumerate(points):
        ax = axes[row, 0]
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [0, 0], color="C0", lw=1.2, label="94 % interval")
        if sd is not None:
            ax.plot([value - sd, value + sd], [0, 0], color="C0", lw=5, alpha=0.5, label="± 1 sd")
        ax.plot([value], [0], "o", color="C0", label="estimate")
        t = _truth_value(truth, site, idx)
        if t is not None:
            ax.axvline(t, **_TRUTH_STYLE, label="truth")
        ax.set_yticks([])
        ax.set_xlabel(_label(label, labels, units, site, idx))
        ax.margins(x=0.3)
    _header(fig, title or "point estimate and uncertainty", axes[0, 0], 1.25 * n + 1.0)
    return fig


def map_figure(image, *, extent=None, xlabel="x (m)", ylabel="z (m)", title="", colorbar_label="", mask=None,
               truth=None, truth_extent=None, cmap="viridis", vmin=None, vmax=None):
    """A 2-D map ``image (nz, nx)`` (row 0 at the bottom) with a labelled colour bar, cells
    outside ``mask`` left blank, and the truth's outline (the contour half-way between its
    smallest and largest finite values) when ``truth`` is given."""
    import matplotlib.pyplot as plt

    img = np.array(image, dtype=float)
    if mask is not None and np.shape(mask) == img.shape:
        img = np.where(mask, img, np.nan)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cm = plt.get_cmap(cmap).with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_invalid(img), origin="lower", extent=extent, aspect="auto", cmap=cm, vmin=vmin, vmax=vmax)
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(colorbar_label)
    if truth is not None:
        t = np.asarray(truth, dtype=float)
        finite = t[np.isfinite(t)]
        if finite.size and finite.max() > finite.min() and t.ndim == 2:
            level = 0.5 * (finite.min() + finite.max())
            te = truth_extent or extent
            nz, nx = t.shape
            xs = np.linspace(te[0], te[1], nx + 1)
            zs = np.linspace(te[2], te[3], nz + 1)
            ax.contour(0.5 * (xs[1:] + xs[:-1]), 0.5 * (zs[1:] + zs[:-1]), np.where(np.isfinite(t), t, finite.max()),
                       levels=[level], colors="crimson", linewidths=1.2)
            ax.plot([], [], color="crimson", lw=1.2, label="truth (outline)")
            ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


__all__ = ["MAX_PANELS", "elements", "map_figure", "parse_label", "pick_elements", "point_figure", "rank_figure",
           "trace_figure"]
