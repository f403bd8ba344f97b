"""The compiled loops of :mod:`.forestfused` (numba): scikit-learn's depth-first tree builder and best splitter.

Imported only where numba is installed (the ``fast`` extra). Module-level functions, so that numba's
cache keeps them compiled across processes (a closure over another compiled function defeats it).
"""

from __future__ import annotations

import math

import numpy as np

from numba.cpython.unsafe.numbers import trailing_zeros

from echolab.analysis.compare.compiled import jit


@jit
def rand_int(state, low, high):  # pragma: no cover - compiled
    # scikit-learn's rand_int(low, high, &seed): its 32-bit xorshift (our_rand_r), then a modulo
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s % 2147483648) % (high - low)


@jit
def scores(criterion, wl, wr, sq_l, sq_r, left, total, ln2):  # pragma: no cover - compiled
    # the children's impurities from their class weights, as the criterion computes them: Gini from the sums of
    # squared weights; entropy as -sum p log2 p, p = k / w, log2 x = ln x / ln 2 (the C library's log)
    if criterion == 0:
        il = 1.0 - np.float64(sq_l) / (np.float64(wl) * np.float64(wl))
        ir = 1.0 - np.float64(sq_r) / (np.float64(wr) * np.float64(wr))
        return il, ir
    el = 0.0
    er = 0.0
    for c in range(left.shape[0]):
        kl = left[c]
        kr = total[c] - kl
        if kl > 0:
            pl = np.float64(kl) / np.float64(wl)
            el -= pl * (math.log(pl) / ln2)
        if kr > 0:
            pr = np.float64(kr) / np.float64(wr)
            er -= pr * (math.log(pr) / ln2)
    return el, er


@jit
def node_impurity(criterion, total, w, ln2):  # pragma: no cover - compiled
    if criterion == 0:
        sq = 0
        for c in range(total.shape[0]):
            sq += total[c] * total[c]
        return 1.0 - np.float64(sq) / (np.float64(w) * np.float64(w))
    e = 0.0
    for c in range(total.shape[0]):
        if total[c] > 0:
            pc = np.float64(total[c]) / np.float64(w)
            e -= pc * (math.log(pc) / ln2)
    return e


@jit
def clear_marks(bits, summary, lo, hi):  # pragma: no cover - compiled
    # Every mark of summary's words lo..hi cleared, and the words of bits they point to.
    for w1 in range(lo, hi + 1):
        top = summary[w1]
        summary[w1] = 0
        while top:
            bits[(w1 << 6) + trailing_zeros(top)] = 0
            top &= top - np.uint64(1)


@jit(inline=True)
def scan_gini(bits, summary, lo, hi, order, values, y, weight, weight_f, total, total_f, left, start, end, wn,
              min_leaf, f, exact, best):  # pragma: no cover - compiled
    # Every position p of a feature's sorted values in the node (the first p - start samples to the left) in turn,
    # for the Gini criterion: the best split so far in best (proxy, fraction's numerator and denominator, -,
    # position, feature, threshold). The node's samples are read in ascending order of the feature from their
    # marks (see grow_tree), which are cleared as they are read: a rank r set in bits is sample order[r], of
    # value values[r]; summary's words lo..hi say which words of bits hold marks.
    # Class weights are whole numbers held in doubles, every sum and product of them below 2**53: exact. The
    # proxy is -wn + (sq_l / wl + sq_r / wr); with exact set that fraction is compared exactly first, and only
    # a candidate as good as the best has its proxy computed as the criterion computes it. Positions inside a
    # run of ties, or leaving a child too small, are no split: one rarely taken branch passes them over.
    T = np.float32(1e-7)
    for c in range(left.shape[0]):
        left[c] = 0
    wl = 0.0
    sq_l = 0.0
    sq_r = 0.0
    for c in range(total.shape[0]):
        sq_r += np.float64(total[c] * total[c])
    best_proxy = best[0]
    best_num = best[1]
    best_den = best[2]
    p = start
    before = np.float32(0.0)  # the value of the sample before p (compared only from p = start + min_leaf on)
    for w1 in range(lo, hi + 1):
        top = summary[w1]
        summary[w1] = 0
        while top:
            wi = (w1 << 6) + trailing_zeros(top)
            top &= top - np.uint64(1)
            word = bits[wi]
            bits[wi] = 0
            while word:
                r = (wi << 6) + trailing_zeros(word)
                word &= word - np.uint64(1)
                v = values[r]
                if (v > before + T) & (p - start >= min_leaf) & (end - p >= min_leaf):
                    wr = wn - wl
                    better = True
                    if exact:
                        a = (sq_l * wr + sq_r * wl) * best_den
                        b = best_num * (wl * wr)
                        if a < b:
                            better = False
                        elif a > b:
                            best_proxy = -np.inf  # strictly better: its double is larger too
                    if better:
                        il = 1.0 - sq_l / (wl * wl)
                        ir = 1.0 - sq_r / (wr * wr)
                        proxy = -wr * ir - wl * il
                        if proxy > best_proxy:
                            best_proxy = proxy
                            best_num = sq_l * wr + sq_r * wl
                            best_den = wl * wr
                            best[4] = p
                            best[5] = f
                            best[6] = np.float64(before) / 2.0 + np.float64(v) / 2.0
                # the sample at p joins the left side
                before = v
                p += 1
                i = order[r]
                c = y[i]
                k = left[c]
                left[c] = k + weight[i]  # an integer count: the next sample of the class waits least for it
                w = weight_f[i]
                kl = np.float64(k)
                kr = total_f[c] - kl
                wl += w
                sq_l += (2.0 * kl + w) * w
                sq_r -= (2.0 * kr - w) * w
    best[0] = best_proxy
    best[1] = best_num
    best[2] = best_den


@jit(inline=True)
def scan_entropy(bits, summary, lo, hi, order, values, y, weight, total, left, start, end, wn, min_leaf, f, ln2,
                 xlogx, margin, best):  # pragma: no cover - compiled
    # scan_gini for the entropy criterion: a candidate's proxy is computed as the criterion computes it (from the
    # table of its terms) only where the running sums of k log2 k put it within margin of the best so far.
    T = np.float32(1e-7)
    for c in range(left.shape[0]):
        left[c] = 0
    wl = 0
    sum_l = 0.0
    sum_r = 0.0
    for c in range(total.shape[0]):
        sum_r += xlogx[total[c]]
    best_proxy = best[0]
    best_sum = best[3]
    p = start
    before = np.float32(0.0)
    for w1 in range(lo, hi + 1):
        top = summary[w1]
        summary[w1] = 0
        while top:
            wi = (w1 << 6) + trailing_zeros(top)
            top &= top - np.uint64(1)
            word = bits[wi]
            bits[wi] = 0
            while word:
                r = (wi << 6) + trailing_zeros(word)
                word &= word - np.uint64(1)
                v = values[r]
                if (v > before + T) & (p - start >= min_leaf) & (end - p >= min_leaf):
                    wr = wn - wl
                    candidate = (sum_l - xlogx[wl]) + (sum_r - xlogx[wr])
                    if candidate >= best_sum - margin:
                        il, ir = scores(1, wl, wr, 0, 0, left, total, ln2)
                        proxy = -np.float64(wr) * ir - np.float64(wl) * il
                        if proxy > best_proxy:
                            best_proxy = proxy
                            best_sum = candidate
                            best[4] = p
                            best[5] = f
                            best[6] = np.float64(before) / 2.0 + np.float64(v) / 2.0
                before = v
                p += 1
                i = order[r]
                c = y[i]
                w = weight[i]
                kl = left[c]
                kr = total[c] - kl
                left[c] = kl + w
                wl += w
                sum_l += xlogx[kl + w] - xlogx[kl]
                sum_r += xlogx[kr - w] - xlogx[kr]
    best[0] = best_proxy
    best[3] = best_sum


@jit(inline=True)
def scratch(n, n_features, n_classes):  # pragma: no cover - compiled
    # What grow_tree works in, for trees of n samples (reused from one tree to the next; inlined into grow_forest,
    # whose loops are then as fast as with arrays allocated in place): the node's samples, a partition's buffer,
    # the marks of a node's ranks and their summary (all zero between uses), the feature permutation and
    # constants; the node arrays (a tree of n samples has at most 2n - 1 nodes); class counts, weights as
    # doubles, the best split, the builder's stack.
    cap = 2 * n + 1
    return (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.zeros((n + 63) >> 6, dtype=np.uint64),
            np.zeros((n + 4095) >> 12, dtype=np.uint64), np.empty(n_features, dtype=np.int64),
            np.empty(n_features, dtype=np.int64),
            np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64),
            np.empty(cap, dtype=np.float64), np.empty((cap, n_classes), dtype=np.float64),
            np.empty(cap, dtype=np.float64), np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.float64),
            np.empty(cap, dtype=np.uint8),
            np.empty(n_classes, dtype=np.int64), np.empty(n_classes, dtype=np.int64),
            np.empty(n_classes, dtype=np.float64), np.empty(n, dtype=np.float64), np.empty(7, dtype=np.float64),
            np.empty((n + 2, 6), dtype=np.int64), np.empty(n + 2, dtype=np.float64))


#: Where the node arrays stand in scratch()'s tuple: children, feature, threshold, values, impurity, samples,
#: weighted samples, the side of unseen values.
NODE_ARRAYS = slice(6, 15)


@jit
def grow_tree(XT, order, ordered_values, rank, y, n_classes, weight, splitter_seed, max_features, max_depth, min_split,
              min_leaf, min_decrease, criterion, ln2, xlogx, samples, aside, bits, summary, features, constants,
              left_of, right_of, feature_of, threshold_of, value_of, impurity_of, count_of,
              weighted_of, missing_of, total, left, total_f, weight_f, best, st_int, st_imp):  # pragma: no cover
    # One tree as DepthFirstTreeBuilder grows it with BestSplitter, in the arrays of scratch() (passed one by one:
    # a tuple of them costs the loops a few percent); returns its node count and depth. Node arrays as the tree's
    # nodes hold them: children (-1 for a leaf), feature and threshold (-2 for a leaf), class fractions, impurity,
    # samples, weighted samples, and the side unseen values take (the larger child's; 0 for a leaf).
    # st_int/st_imp: the builder's stack of (start, end, depth, parent, is_left, constants known) and the node's
    # impurity.
    n_features, n = XT.shape
    T = np.float32(1e-7)  # FEATURE_THRESHOLD, a float32: values within it are ties, compared in float32 as there
    eps = np.finfo(np.float64).eps
    m = 0
    w_all = 0
    for i in range(n):
        weight_f[i] = weight[i]
        if weight[i] != 0:
            samples[m] = i
            m += 1
        w_all += weight[i]
    w_all_d = np.float64(w_all)
    # Gini scores are compared first as exact fractions of integers; below this total weight two different
    # fractions are further apart than the rounding of the criterion's formula, so they order its doubles alike
    exact_gini = w_all <= 1024
    # entropy scores are screened with running sums of k log2 k; a candidate this far below the best cannot be
    # above it in the criterion's doubles (the sums' rounding is many orders of magnitude smaller)
    margin = 1e-6 * max(1.0, w_all_d * w_all_d / 1e6)
    for f in range(n_features):
        features[f] = f
    state = np.empty(1, dtype=np.int64)
    state[0] = splitter_seed
    n_nodes = 0
    depth_seen = -1
    top = 1
    st_int[0, 0] = 0
    st_int[0, 1] = m
    st_int[0, 2] = 0
    st_int[0, 3] = -1
    st_int[0, 4] = 0
    st_int[0, 5] = 0
    st_imp[0] = np.inf
    first = True
    while top > 0:
        top -= 1
        start = st_int[top, 0]
        end = st_int[top, 1]
        depth = st_int[top, 2]
        parent = st_int[top, 3]
        is_left = st_int[top, 4]
        n_known = st_int[top, 5]
        impurity = st_imp[top]
        # node_reset: the node's class weights
        for c in range(n_classes):
            total[c] = 0
        wn = 0
        for p in range(start, end):
            i = samples[p]
            total[y[i]] += weight[i]
            wn += weight[i]
        n_node = end - start
        is_leaf = depth >= max_depth or n_node < min_split or n_node < 2 * min_leaf
        if first:
            impurity = node_impurity(criterion, total, wn, ln2)
            first = False
        is_leaf = is_leaf or impurity <= eps
        best_pos = end
        best_feature = -1
        best_threshold = 0.0
        imp_left = 0.0
        imp_right = 0.0
        n_total = n_known
        if not is_leaf:
            # the best split so far: proxy, its fraction (Gini: numerator, denominator) or running sum (entropy),
            # position, feature, threshold
            best[0] = -np.inf
            best[1] = 0.0
            best[2] = 0.0
            best[3] = -np.inf
            best[4] = end
            best[5] = -1
            best[6] = 0.0
            for c in range(n_classes):
                total_f[c] = total[c]
            f_i = n_features
            n_visited = 0
            n_found = 0
            n_drawn = 0
            while f_i > n_total and (n_visited < max_features or n_visited <= n_found + n_drawn):
                n_visited += 1
                f_j = rand_int(state, n_drawn, f_i - n_found)
                if f_j < n_known:
                    t = features[n_drawn]
                    features[n_drawn] = features[f_j]
                    features[f_j] = t
                    n_drawn += 1
                    continue
                f_j += n_found
                f = features[f_j]
                # node_split_best's sort, without sorting: the node's samples are marked at their ranks in the
                # fold's order of the feature (a bit each, and a bit in the summary for each word of marks), and the
                # scan reads them back in order; a constant feature is found from the extreme ranks first
                rrow = rank[f]
                lo = n
                hi = 0
                for p in range(start, end):
                    r = rrow[samples[p]]
                    bits[r >> 6] |= np.uint64(1) << np.uint64(r & 63)
                    summary[r >> 12] |= np.uint64(1) << np.uint64((r >> 6) & 63)
                    lo = min(lo, r)
                    hi = max(hi, r)
                values = ordered_values[f]
                if values[hi] <= values[lo] + T:
                    clear_marks(bits, summary, lo >> 12, hi >> 12)
                    t = features[f_j]
                    features[f_j] = features[n_total]
                    features[n_total] = t
                    n_found += 1
                    n_total += 1
                    continue
                f_i -= 1
                t = features[f_i]
                features[f_i] = features[f_j]
                features[f_j] = t
                if criterion == 0:
                    scan_gini(bits, summary, lo >> 12, hi >> 12, order[f], values, y, weight, weight_f, total,
                              total_f, left, start, end, np.float64(wn), min_leaf, f, exact_gini, best)
                else:
                    scan_entropy(bits, summary, lo >> 12, hi >> 12, order[f], values, y, weight, total, left,
                                 start, end, wn, min_leaf, f, ln2, xlogx, margin, best)
            best_pos = np.int64(best[4])
            best_feature = np.int64(best[5])
            best_threshold = best[6]
            if best_pos < end:
                # partition_samples_final, then the children's impurities and the improvement
                # (a stable partition, without a branch per sample: the left child's samples in place, the
                # right's set aside and copied after; the order within a child is of no consequence)
                row = XT[best_feature]
                for c in range(n_classes):
                    left[c] = 0
                wl = 0
                a = start
                b = 0
                for p in range(start, end):
                    i = samples[p]
                    go = np.float64(row[i]) <= best_threshold
                    samples[a] = i
                    aside[b] = i
                    a += go
                    b += 1 - go
                    left[y[i]] += weight[i] * go
                    wl += weight[i] * go
                for j in range(b):
                    samples[a + j] = aside[j]
                wr = wn - wl
                sq_l = 0
                sq_r = 0
                for c in range(n_classes):
                    sq_l += left[c] * left[c]
                    sq_r += (total[c] - left[c]) * (total[c] - left[c])
                imp_left, imp_right = scores(criterion, wl, wr, sq_l, sq_r, left, total, ln2)
                wn_d = np.float64(wn)
                improvement = (wn_d / w_all_d) * (impurity - (np.float64(wr) / wn_d * imp_right)
                                                  - (np.float64(wl) / wn_d * imp_left))
                if improvement + eps < min_decrease:
                    best_pos = end
            for q in range(n_known):
                features[q] = constants[q]
            for q in range(n_known, n_known + n_found):
                constants[q] = features[q]
            is_leaf = best_pos >= end
        node = n_nodes
        n_nodes += 1
        if parent >= 0:
            if is_left:
                left_of[parent] = node
            else:
                right_of[parent] = node
        wn_d = np.float64(wn)
        for c in range(n_classes):
            value_of[node, c] = np.float64(total[c]) / wn_d
        impurity_of[node] = impurity
        count_of[node] = n_node
        weighted_of[node] = wn_d
        if depth > depth_seen:
            depth_seen = depth
        if is_leaf:
            left_of[node] = -1
            right_of[node] = -1
            feature_of[node] = -2
            threshold_of[node] = -2.0
            missing_of[node] = 0
        else:
            feature_of[node] = best_feature
            threshold_of[node] = best_threshold
            missing_of[node] = best_pos - start > end - best_pos
            for side in range(2):  # the right child pushed first: the left one is grown first
                st_int[top, 0] = best_pos if side == 0 else start
                st_int[top, 1] = end if side == 0 else best_pos
                st_int[top, 2] = depth + 1
                st_int[top, 3] = node
                st_int[top, 4] = side
                st_int[top, 5] = n_total
                st_imp[top] = imp_right if side == 0 else imp_left
                top += 1
    return n_nodes, depth_seen


@jit
def grow_forest(XT, order, ordered_values, rank, y, n_classes, counts, splitter_seeds, max_features, max_depth, min_split,
                min_leaf, min_decrease, criterion, ln2, xlogx, XtT, proba):  # pragma: no cover - compiled
    # Every tree in turn, each held-out row's class fractions added into proba in tree order.
    n_test = XtT.shape[1]
    work = scratch(XT.shape[1], XT.shape[0], n_classes)
    left_of, right_of, feature_of, threshold_of, value_of = work[6], work[7], work[8], work[9], work[10]
    for t in range(counts.shape[0]):
        grow_tree(XT, order, ordered_values, rank, y, n_classes, counts[t], splitter_seeds[t], max_features, max_depth,
                  min_split, min_leaf, min_decrease, criterion, ln2, xlogx, *work)
        for r in range(n_test):
            node = 0
            while left_of[node] >= 0:
                if np.float64(XtT[feature_of[node], r]) <= threshold_of[node]:
                    node = left_of[node]
                else:
                    node = right_of[node]
            for c in range(n_classes):
                proba[r, c] += value_of[node, c]
