# fmnist_subset.sh: sourced by the end-to-end scripts. fmnist_subset SRC_DIR DST_DIR N_TRAIN N_TEST writes the
# first N images of Fashion-MNIST's train and test splits as raw IDX files (the reader takes raw or .gz), so a
# test can run the real pipeline on a small slice of real data.
be32() { # a 32-bit big-endian integer as 4 raw bytes
    local n=$1
    printf '%b' "$(printf '\\0%03o' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
}
fmnist_idx_subset() { # SRC DST prefix (train, t10k) N; IDX header = magic, dimensions
    local src=$1 dst=$2 p=$3 n=$4 images="$2/$3-images-idx3-ubyte" labels="$2/$3-labels-idx1-ubyte"
    # head stops zcat early (SIGPIPE): hence `|| true`, and the size checks
    { printf '\0\0\10\3' && be32 "$n" && be32 28 && be32 28 &&
        { zcat "$src/$p-images-idx3-ubyte.gz" || true; } | head -c $((16 + n * 784)) | tail -c +17
    } > "$images"
    { printf '\0\0\10\1' && be32 "$n" &&
        { zcat "$src/$p-labels-idx1-ubyte.gz" || true; } | head -c $((8 + n)) | tail -c +9; } > "$labels"
    [ "$(stat -c %s "$images")" = $((16 + n * 784)) ] && [ "$(stat -c %s "$labels")" = $((8 + n)) ]
}
fmnist_subset() { # SRC DST N_TRAIN N_TEST
    mkdir -p "$2" && fmnist_idx_subset "$1" "$2" train "$3" && fmnist_idx_subset "$1" "$2" t10k "$4"
}
