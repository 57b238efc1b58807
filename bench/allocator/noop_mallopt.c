/* A mallopt that changes nothing. Preloaded into `contrastive` (LD_PRELOAD), it undoes
 * contrastive_tensor::keep_freed_memory, so one binary runs with glibc's allocator
 * defaults for the A/B of ab.sh. */
int mallopt(int param, int value) {
    (void)param;
    (void)value;
    return 1;
}
