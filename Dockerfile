# walhook: a static binary in a small, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/walhook ./cmd/walhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/walhook /usr/local/bin/walhook
USER nonroot:nonroot
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/walhook"]
CMD ["run", "--config", "/etc/walhook/walhook.yaml"]
