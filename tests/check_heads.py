#!/usr/bin/env python3
"""check_heads.py: an independent numpy check of decouple's NCM and tau-norm numbers.

Recomputes, from exported features and the joint classifier's weights, with numpy only (no torch, no decouple
code):

  * NCM (the reference's KNNClassifier, default feat_type cl2n, dist l2): mu = mean of all training features;
    t(x) = (x - mu) / ||x - mu||; c_j = mean over class j of t(x_i) (not re-normalised);
    logits = -||t(x) - c_j||^2. (feat_type un | l2n | cl2n and dist l2 | cos = t.c / D are supported.)
  * tau-norm (the reference's tau_norm.py): W_j / ||W_j||^tau, logits = x . W~_j, NO bias (unless the results
    say keep_bias), at the tau decouple reports; with validation features also the sweep
    tau = 0, 0.1, ..., 2.0, the tau chosen on validation by decouple's rule (max val macro; ties: higher
    val micro, then smaller tau), and the test accuracy at that tau.

and compares top-1 (micro) and macro (mean of per-class accuracies over the classes present in the eval set)
with results.json. Exit status: 0 all numbers agree within --tolerance, 1 a mismatch, 2 bad input.

CONTRACT with the lead's results.json (keys this script reads; everything else is ignored):

    {
      "heads": {
        "ncm":      {"feat_type": "cl2n", "dist": "l2",            # optional, these are the defaults
                     "test": {"top1": <fraction>, "macro": <fraction>}},
        "tau_norm": {"tau": <float>, "keep_bias": false,            # keep_bias optional, default false
                     "test": {"top1": <fraction>, "macro": <fraction>}}
      }
    }

Accuracies are fractions in [0, 1] (not percent). "tau" is the tau decouple chose on validation (and used for
"test"). A missing "ncm" or "tau_norm" section is skipped with a note (not an error) unless --require-all.

Inputs are .npy files (np.save / decouple's core/npy.c): features float32 [N, D] row-major, labels int32 or
int64 [N], fc weight float32 [C, D] (PyTorch fc.weight layout), fc bias float32 [C] (only needed with
keep_bias). Large training feature files are memory-mapped and processed in chunks.

Example:
    python3 tests/check_heads.py --train-feats run/feats_train.npy --train-labels run/labels_train.npy \\
        --test-feats run/feats_test.npy --test-labels run/labels_test.npy \\
        --fc-weight run/fc_weight.npy [--fc-bias run/fc_bias.npy] \\
        [--val-feats run/feats_val.npy --val-labels run/labels_val.npy] \\
        --results run/results.json --tolerance 0.002
"""
import argparse
import json
import sys

import numpy as np

CHUNK = 2048


def die(msg):
    print(f"check_heads.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path, what, ndim):
    try:
        a = np.load(path, mmap_mode="r")
    except Exception as e:  # noqa: BLE001 (any reason a file cannot be read is a usage error here)
        die(f"{what}: cannot read {path}: {e}")
    if a.ndim != ndim:
        die(f"{what}: {path} has {a.ndim} dimensions, expected {ndim}")
    return a


def labels_of(path, what, n, num_classes=None):
    y = np.asarray(load(path, what, 1)).astype(np.int64)
    if y.shape[0] != n:
        die(f"{what}: {path} has {y.shape[0]} labels for {n} feature rows")
    if y.size and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        die(f"{what}: labels outside [0, {num_classes})")
    return y


def accuracies(pred, y, num_classes):
    """micro top-1 and macro (mean per-class accuracy over the classes present in y)."""
    correct = pred == y
    count = np.bincount(y, minlength=num_classes)
    hit = np.bincount(y, weights=correct, minlength=num_classes)
    present = count > 0
    return float(correct.mean()), float((hit[present] / count[present]).mean())


def transform(x, feat_type, mu):
    x = np.asarray(x, dtype=np.float64)
    if feat_type == "cl2n":
        x = x - mu
    if feat_type in ("l2n", "cl2n"):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
    return x


def ncm_fit(X, y, num_classes, feat_type):
    D = X.shape[1]
    mu = np.zeros(D)
    for i in range(0, X.shape[0], CHUNK):
        mu += np.asarray(X[i:i + CHUNK], dtype=np.float64).sum(axis=0)
    mu /= X.shape[0]
    mu = mu.astype(np.float32).astype(np.float64)  # decouple centres with the float32 mean
    sums = np.zeros((num_classes, D))
    for i in range(0, X.shape[0], CHUNK):
        t = transform(X[i:i + CHUNK], feat_type, mu)
        yc = y[i:i + CHUNK]
        order = np.argsort(yc, kind="stable")
        ys = yc[order]
        starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
        sums[ys[starts]] += np.add.reduceat(t[order], starts, axis=0)
    counts = np.bincount(y, minlength=num_classes)
    if (counts == 0).any():
        die(f"NCM: class {int(np.flatnonzero(counts == 0)[0])} has no training sample")
    return sums / counts[:, None], mu


def ncm_predict(X, centroids, mu, feat_type, dist):
    preds = []
    cc = (centroids ** 2).sum(axis=1)
    for i in range(0, X.shape[0], CHUNK):
        t = transform(X[i:i + CHUNK], feat_type, mu)
        tc = t @ centroids.T
        if dist == "l2":
            logits = -((t ** 2).sum(axis=1, keepdims=True) + cc[None, :] - 2 * tc)
        else:
            logits = tc / t.shape[1]
        preds.append(np.argmax(logits, axis=1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def tau_weights(W, tau):
    n = np.linalg.norm(W, axis=1, keepdims=True)
    f = np.where(n > 0, np.power(np.where(n > 0, n, 1.0), -tau), 1.0)
    return W * f


def linear_predict(X, W, b):
    preds = []
    for i in range(0, X.shape[0], CHUNK):
        z = np.asarray(X[i:i + CHUNK], dtype=np.float64) @ W.T
        if b is not None:
            z = z + b
        preds.append(np.argmax(z, axis=1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def choose_tau(rows):
    """rows: list of (tau, micro, macro); decouple's rule: max macro, then max micro, then smaller tau."""
    best = None
    for r in rows:
        if best is None or (r[2], r[1], -r[0]) > (best[2], best[1], -best[0]):
            best = r
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-feats", required=True)
    ap.add_argument("--train-labels", required=True)
    ap.add_argument("--test-feats", required=True)
    ap.add_argument("--test-labels", required=True)
    ap.add_argument("--fc-weight", required=True)
    ap.add_argument("--fc-bias")
    ap.add_argument("--val-feats")
    ap.add_argument("--val-labels")
    ap.add_argument("--results", required=True)
    ap.add_argument("--tolerance", type=float, default=0.002,
                    help="largest allowed |numpy - decouple| per accuracy, as a fraction (default 0.002)")
    ap.add_argument("--require-all", action="store_true", help="a missing results section is a mismatch")
    a = ap.parse_args()

    try:
        with open(a.results) as f:
            results = json.load(f)
    except Exception as e:  # noqa: BLE001
        die(f"cannot read {a.results}: {e}")
    heads = results.get("heads")
    if not isinstance(heads, dict):
        die(f"{a.results}: no \"heads\" object (see the contract at the top of this script)")

    W = np.asarray(load(a.fc_weight, "fc weight", 2), dtype=np.float64)
    C, D = W.shape
    Xtr = load(a.train_feats, "train features", 2)
    Xte = load(a.test_feats, "test features", 2)
    for name, X in (("train", Xtr), ("test", Xte)):
        if X.shape[1] != D:
            die(f"{name} features have dimension {X.shape[1]}, the fc weight has {D}")
    ytr = labels_of(a.train_labels, "train labels", Xtr.shape[0], C)
    yte = labels_of(a.test_labels, "test labels", Xte.shape[0], C)

    mismatches, checked = [], 0

    def compare(what, ours, theirs):
        nonlocal checked
        if theirs is None:
            if a.require_all:
                mismatches.append(f"{what}: missing in {a.results}")
            return
        checked += 1
        diff = abs(ours - float(theirs))
        ok = diff <= a.tolerance + 1e-9  # 1e-9: summation-order noise of the macro mean
        flag = "ok" if ok else "MISMATCH"
        print(f"  {what:34s} numpy {ours:.5f}  decouple {float(theirs):.5f}  |diff| {diff:.5f}  {flag}")
        if not ok:
            mismatches.append(f"{what}: numpy {ours:.5f} vs decouple {float(theirs):.5f}")

    # ---- NCM
    ncm = heads.get("ncm")
    if isinstance(ncm, dict):
        ft, dist = ncm.get("feat_type", "cl2n"), ncm.get("dist", "l2")
        if ft not in ("un", "l2n", "cl2n") or dist not in ("l2", "cos"):
            die(f"{a.results}: heads.ncm feat_type {ft!r} / dist {dist!r} unknown")
        cent, mu = ncm_fit(Xtr, ytr, C, ft)
        top1, macro = accuracies(ncm_predict(Xte, cent, mu, ft, dist), yte, C)
        print(f"NCM ({ft}, {dist}) on test:")
        t = ncm.get("test", {})
        compare("ncm test top1", top1, t.get("top1"))
        compare("ncm test macro", macro, t.get("macro"))
    else:
        print("NCM: no heads.ncm in the results, skipped")
        if a.require_all:
            mismatches.append("heads.ncm missing")

    # ---- tau-norm
    tn = heads.get("tau_norm")
    if isinstance(tn, dict):
        if "tau" not in tn:
            die(f"{a.results}: heads.tau_norm has no \"tau\"")
        tau = float(tn["tau"])
        keep_bias = bool(tn.get("keep_bias", False))
        b = None
        if keep_bias:
            if not a.fc_bias:
                die("the results say keep_bias: true, pass --fc-bias")
            b = np.asarray(load(a.fc_bias, "fc bias", 1), dtype=np.float64)
        # decouple stores tau as float32
        tau32 = float(np.float32(tau))
        top1, macro = accuracies(linear_predict(Xte, tau_weights(W, tau32), b), yte, C)
        print(f"tau-norm at decouple's tau = {tau:g} ({'with' if keep_bias else 'no'} bias) on test:")
        t = tn.get("test", {})
        compare("tau-norm test top1", top1, t.get("top1"))
        compare("tau-norm test macro", macro, t.get("macro"))
        if a.val_feats and a.val_labels:
            Xva = load(a.val_feats, "val features", 2)
            yva = labels_of(a.val_labels, "val labels", Xva.shape[0], C)
            rows = []
            print("tau sweep on validation (tau, micro, macro):")
            for i in range(21):
                tk = i * (2.0 / 20.0)
                mi, ma = accuracies(linear_predict(Xva, tau_weights(W, float(np.float32(tk))), b), yva, C)
                rows.append((tk, mi, ma))
                print(f"  {tk:4.1f}  {mi:.5f}  {ma:.5f}")
            best = choose_tau(rows)
            print(f"  numpy's choice: tau = {best[0]:.1f} (val macro {best[2]:.5f}); decouple chose {tau:g}")
            if abs(best[0] - tau) > 1e-6:
                # a different choice is acceptable only when the two taus are within tolerance on val macro
                theirs = [r for r in rows if abs(r[0] - tau) < 1e-6]
                if not theirs or best[2] - theirs[0][2] > a.tolerance:
                    mismatches.append(f"val-chosen tau: numpy {best[0]:.1f} vs decouple {tau:g}")
                else:
                    print("  (different tau, but its val macro is within the tolerance of numpy's best)")
            Wb = tau_weights(W, float(np.float32(best[0])))
            top1b, macrob = accuracies(linear_predict(Xte, Wb, b), yte, C)
            print(f"  test at numpy's val-chosen tau: top1 {top1b:.5f} macro {macrob:.5f}")
    else:
        print("tau-norm: no heads.tau_norm in the results, skipped")
        if a.require_all:
            mismatches.append("heads.tau_norm missing")

    if mismatches:
        print(f"check_heads.py: {len(mismatches)} MISMATCH(ES):", file=sys.stderr)
        for m in mismatches:
            print(f"  {m}", file=sys.stderr)
        return 1
    print(f"check_heads.py: {checked} numbers agree within {a.tolerance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
