/* SPDX-License-Identifier: Apache-2.0 */
/* Decoder cost: decodes one payload file ITER times in a format, the way
 * a route does (payload_decode, then one field looked up), and prints
 * "FORMAT BYTES NS_PER_MESSAGE". decode_bench.py runs it for JSON, CBOR and
 * MessagePack encodings of the same documents and prints them side by
 * side. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "bridge/core/decode.h"
#include "bridge/core/source.h"

int
main(int argc, char **argv)
{
	struct limits lim = { .max_payload = 1 << 24, .max_json_depth = 32 };
	enum payload_format f;
	struct timespec t0, t1;
	char *data, err[160];
	long size, iter;
	FILE *in;

	if (argc != 4 || payload_format_parse(argv[2], &f) < 0) {
		fprintf(stderr, "usage: decode_bench FILE FORMAT ITERATIONS\n");
		return 2;
	}
	in = fopen(argv[1], "rb");
	if (in == NULL || fseek(in, 0, SEEK_END) != 0 || (size = ftell(in)) < 0) {
		perror(argv[1]);
		return 1;
	}
	rewind(in);
	data = malloc((size_t)size + 1);
	if (fread(data, 1, (size_t)size, in) != (size_t)size) {
		perror(argv[1]);
		return 1;
	}
	fclose(in);
	iter = atol(argv[3]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < iter; i++) {
		struct json_object *o = NULL, *id = NULL;

		if (payload_decode(f, data, (size_t)size, &lim, &o, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		if (!json_object_object_get_ex(o, "id", &id) || json_object_get_string(id) == NULL)
			return 1;
		json_object_put(o);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%s %ld %.0f\n", argv[2], size,
	    ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)iter);
	free(data);
	return 0;
}
