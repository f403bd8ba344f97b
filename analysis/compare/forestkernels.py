"""The compiled loops of :mod:`.forestfused` (numba): scikit-learn's depth-first tree builder and best splitter.

Imported only where numba is installed (the ``fast`` extra). Module-level functions, so that numba's
cache keeps them compiled across processes (a closure over another compiled function defeats it).
"""

from __future__ import annotations

import math

import numpy as np

from echolab.analysis.compare.compiled import jit


@jit
def sort_keys(a, lo, hi, stack):  # pragma: no cover - compiled
    # a[lo:hi] ascending, for distinct keys (a sample's value and its index packed in one integer): a quicksort
    # (Hoare's partition around the median of three) with insertion sort for short runs; the larger side is
    # stacked and the smaller sorted first, so the stack (64 slots) never overflows.
    top = 0
    while True:
        if hi - lo <= 16:
            for i in range(lo + 1, hi):
                key = a[i]
                j = i - 1
                while j >= lo and a[j] > key:
                    a[j + 1] = a[j]
                    j -= 1
                a[j + 1] = key
            if top == 0:
                return
            top -= 1
            lo = stack[top, 0]
            hi = stack[top, 1]
            continue
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi - 1]
        if x < y:
            pivot = y if y < z else (z if x < z else x)
        else:
            pivot = x if x < z else (z if y < z else y)
        i = lo - 1
        j = hi
        while True:
            i += 1
            while a[i] < pivot:
                i += 1
            j -= 1
            while a[j] > pivot:
                j -= 1
            if i >= j:
                break
            t = a[i]
            a[i] = a[j]
            a[j] = t
        # [lo, j] <= pivot <= [j + 1, hi), both sides non-empty (the pivot is neither the least nor the
        # greatest of three distinct keys)
        if j + 1 - lo < hi - j - 1:
            stack[top, 0] = j + 1
            stack[top, 1] = hi
            hi = j + 1
        else:
            stack[top, 0] = lo
            stack[top, 1] = j + 1
            lo = j + 1
        top += 1


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
def scan_gini(fv, samples, y, weight, weight_f, total, total_f, left, start, end, wn, min_leaf, f, exact, best):  # pragma: no cover
    # Every position p of a sorted feature (samples[start:p] to the left) in turn, for the Gini criterion: the
    # best split so far in best (proxy, fraction's numerator and denominator, -, position, feature, threshold).
    # Class weights are whole numbers held in doubles, every sum and product of them below 2**53: exact. The
    # proxy is -wn + (sq_l / wl + sq_r / wr); with exact set that fraction is compared exactly first, and only
    # a candidate as good as the best has its proxy computed as the criterion computes it. Positions inside a
    # run of ties, or leaving a child too small, are no split; they and the candidates that cannot beat the
    # best are passed over by one rarely taken branch.
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
    for q in range(start, end - 1):
        i = samples[q]
        c = y[i]
        k = left[c]
        left[c] = k + weight[i]  # an integer count: the next sample of the class waits least for it
        w = weight_f[i]
        kl = np.float64(k)
        kr = total_f[c] - kl
        wl += w
        wr = wn - wl
        sq_l += (2.0 * kl + w) * w
        sq_r -= (2.0 * kr - w) * w
        p = q + 1
        if not ((fv[p] > fv[q] + T) & (p - start >= min_leaf) & (end - p >= min_leaf)):
            continue  # no split here (within a run of ties: a branch taken alike along the run)
        if exact:
            a = (sq_l * wr + sq_r * wl) * best_den
            b = best_num * (wl * wr)
            if a < b:
                continue
            if a > b:
                best_proxy = -np.inf  # strictly better: its double is larger too
        il = 1.0 - sq_l / (wl * wl)
        ir = 1.0 - sq_r / (wr * wr)
        proxy = -wr * ir - wl * il
        if proxy > best_proxy:
            best_proxy = proxy
            best_num = sq_l * wr + sq_r * wl
            best_den = wl * wr
            best[4] = p
            best[5] = f
            best[6] = np.float64(fv[q]) / 2.0 + np.float64(fv[p]) / 2.0
    best[0] = best_proxy
    best[1] = best_num
    best[2] = best_den


@jit
def scan_entropy(fv, samples, y, weight, total, left, start, end, wn, min_leaf, f, ln2, xlogx, margin,
                 best):  # pragma: no cover - compiled
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
    for q in range(start, end - 1):
        i = samples[q]
        c = y[i]
        w = weight[i]
        kl = left[c]
        kr = total[c] - kl
        left[c] = kl + w
        wl += w
        wr = wn - wl
        sum_l += xlogx[kl + w] - xlogx[kl]
        sum_r += xlogx[kr - w] - xlogx[kr]
        candidate = (sum_l - xlogx[wl]) + (sum_r - xlogx[wr])
        p = q + 1
        split = (fv[p] > fv[q] + T) & (p - start >= min_leaf) & (end - p >= min_leaf)
        if not (split & (candidate >= best_sum - margin)):
            continue
        il, ir = scores(1, wl, wr, 0, 0, left, total, ln2)
        proxy = -np.float64(wr) * ir - np.float64(wl) * il
        if proxy > best_proxy:
            best_proxy = proxy
            best_sum = candidate
            best[4] = p
            best[5] = f
            best[6] = np.float64(fv[q]) / 2.0 + np.float64(fv[p]) / 2.0
    best[0] = best_proxy
    best[3] = best_sum


@jit(inline=True)
def scratch(n, n_features, n_classes):  # pragma: no cover - compiled
    # What grow_tree works in, for trees of n samples (reused from one tree to the next; inlined into grow_forest,
    # whose loops are then as fast as with arrays allocated in place): the node's samples and
    # values (one more slot each: a large node's pick writes one past its end), sorting keys, stamps, the feature
    # permutation and constants, the sort's stack; the node arrays (a tree of n samples has at most 2n - 1
    # nodes); class counts, weights as doubles, the best split, the builder's stack.
    cap = 2 * n + 1
    return (np.empty(n + 1, dtype=np.int64), np.empty(n + 1, dtype=np.float32), np.empty(n, dtype=np.int64),
            np.empty(n, dtype=np.int64), np.empty(n_features, dtype=np.int64), np.empty(n_features, dtype=np.int64),
            np.empty((64, 2), dtype=np.int64),
            np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64),
            np.empty(cap, dtype=np.float64), np.empty((cap, n_classes), dtype=np.float64),
            np.empty(cap, dtype=np.float64), np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.float64),
            np.empty(cap, dtype=np.uint8),
            np.empty(n_classes, dtype=np.int64), np.empty(n_classes, dtype=np.int64),
            np.empty(n_classes, dtype=np.float64), np.empty(n, dtype=np.float64), np.empty(7, dtype=np.float64),
            np.empty((n + 2, 6), dtype=np.int64), np.empty(n + 2, dtype=np.float64))


#: Where the node arrays stand in scratch()'s tuple: children, feature, threshold, values, impurity, samples,
#: weighted samples, the side of unseen values.
NODE_ARRAYS = slice(7, 16)


@jit
def grow_tree(XT, keyed, order, ordered_values, y, n_classes, weight, splitter_seed, max_features, max_depth, min_split,
              min_leaf, min_decrease, criterion, ln2, xlogx, samples, fv, keys, stamp, features, constants,
              sort_stack, left_of, right_of, feature_of, threshold_of, value_of, impurity_of, count_of,
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
    low = (1 << 31) - 1
    m = 0
    w_all = 0
    for i in range(n):
        stamp[i] = -1
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
            # node_split_best. A large node takes each feature's values in order from the fold's presorted
            # order (its samples stamped), a small one sorts them.
            presorted = n_node * 16 >= n
            if presorted:
                for p in range(start, end):
                    stamp[samples[p]] = n_nodes
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
                if presorted:  # the node's samples picked out of the feature's order (no branch to mispredict)
                    q = start
                    orow = order[f]
                    vrow = ordered_values[f]
                    after = samples[end]  # every row is written at q, a member only advances it: keep the next
                    for j in range(n):
                        i = orow[j]
                        samples[q] = i
                        fv[q] = vrow[j]
                        q += stamp[i] == n_nodes
                    samples[end] = after
                else:
                    keyrow = keyed[f]
                    row = XT[f]
                    lowest = keyrow[samples[start]]
                    highest = lowest
                    for p in range(start, end):
                        key = keyrow[samples[p]]
                        keys[p] = key
                        lowest = min(lowest, key)
                        highest = max(highest, key)
                    # the sorted values' last and first, compared before sorting: a constant feature is not sorted
                    constant = row[highest & low] <= row[lowest & low] + T
                    if not constant:
                        sort_keys(keys, start, end, sort_stack)
                        for p in range(start, end):
                            i = keys[p] & low
                            samples[p] = i
                            fv[p] = row[i]
                if presorted:
                    constant = fv[end - 1] <= fv[start] + T
                if constant:
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
                    scan_gini(fv, samples, y, weight, weight_f, total, total_f, left, start, end,
                              np.float64(wn), min_leaf, f, exact_gini, best)
                else:
                    scan_entropy(fv, samples, y, weight, total, left, start, end, wn, min_leaf, f, ln2,
                                 xlogx, margin, best)
            best_pos = np.int64(best[4])
            best_feature = np.int64(best[5])
            best_threshold = best[6]
            if best_pos < end:
                # partition_samples_final, then the children's impurities and the improvement
                # (a stable partition, without a branch per sample: the left child's samples in place, the
                # right's through keys; the order within a child is of no consequence)
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
                    keys[b] = i
                    a += go
                    b += 1 - go
                    left[y[i]] += weight[i] * go
                    wl += weight[i] * go
                for j in range(b):
                    samples[a + j] = keys[j]
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
def grow_forest(XT, keyed, order, ordered_values, y, n_classes, counts, splitter_seeds, max_features, max_depth, min_split,
                min_leaf, min_decrease, criterion, ln2, xlogx, XtT, proba):  # pragma: no cover - compiled
    # Every tree in turn, each held-out row's class fractions added into proba in tree order.
    n_test = XtT.shape[1]
    work = scratch(XT.shape[1], XT.shape[0], n_classes)
    left_of, right_of, feature_of, threshold_of, value_of = work[7], work[8], work[9], work[10], work[11]
    for t in range(counts.shape[0]):
        grow_tree(XT, keyed, order, ordered_values, y, n_classes, counts[t], splitter_seeds[t], max_features, max_depth,
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
