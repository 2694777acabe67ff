"""The held-out evaluation split, chosen as the paper does: k-means over the embeddings of prompt +
preferences, then the n examples nearest each centroid (k and n are vars; one example per
conversation)."""

import numpy as np
import pyarrow as pa


def kmeans(points: np.ndarray, k: int, iterations: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centroids = points[rng.choice(len(points), size=k, replace=False)]
    for _ in range(iterations):
        labels = np.argmax(points @ centroids.T, axis=1)  # unit vectors: cosine = dot product
        updated = np.stack([
            points[labels == c].mean(axis=0) if np.any(labels == c) else centroids[c] for c in range(k)
        ])
        updated /= np.linalg.norm(updated, axis=1, keepdims=True)
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids


def model(wf, con):
    wf.config(materialized="table")
    # Ordered: a table's scan order is not stable across builds, and k-means seeds from row positions,
    # so an unordered read picked a different split (and so different training pairs) on a rebuild.
    rows = wf.ref("eval_candidates").order("conversation_id, feedback_turn").fetchall()
    rows = [r for r in rows if r[5] is not None]
    empty = pa.table({"conversation_id": pa.array([], pa.string()), "feedback_turn": pa.array([], pa.int32()),
                      "cluster": pa.array([], pa.int32()), "similarity": pa.array([], pa.float64())})
    if not rows:
        return empty
    points = np.asarray([r[5] for r in rows], dtype=np.float32)
    k = max(1, min(int(wf.var("eval_clusters", 4)), len(rows) // 2))
    per_cluster = int(wf.var("eval_per_cluster", 2))
    # Never hold out more than this share of the candidate conversations: on a small project (the toy
    # data of a plain `wfsql init`) k x n would take every one and leave no training pairs at all.
    # Rounded down, so a lone candidate stays a training example rather than becoming the whole split.
    # (+1e-9: 0.29 x 100 is 28.999... in floating point, and should hold out 29)
    held_out = int(len({r[0] for r in rows}) * float(wf.var("eval_max_share", 0.5)) + 1e-9)
    if held_out == 0:
        return empty
    # fewer per cluster rather than fewer clusters (until held_out < k: then one from each of the first clusters)
    per_cluster = max(1, min(per_cluster, held_out // k))
    centroids = kmeans(points, k)
    similarity = points @ centroids.T
    chosen, seen = [], set()
    for cluster in range(k):
        if len(chosen) >= held_out:
            break
        for index in np.argsort(-similarity[:, cluster]):
            conversation = rows[index][0]
            if conversation in seen:
                continue
            seen.add(conversation)
            chosen.append((conversation, int(rows[index][1]), cluster, float(similarity[index, cluster])))
            if sum(1 for c in chosen if c[2] == cluster) >= per_cluster or len(chosen) >= held_out:
                break
    return pa.table({
        "conversation_id": [c[0] for c in chosen], "feedback_turn": pa.array([c[1] for c in chosen], pa.int32()),
        "cluster": pa.array([c[2] for c in chosen], pa.int32()), "similarity": [c[3] for c in chosen],
    })
