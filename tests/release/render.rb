# Renders a BOSH job's templates the way the director and bosh create-env do,
# for tests: properties are filtered to those the job spec declares (defaults
# filled in), and templates see the helpers p(), if_p() and spec.
#
#   ruby render.rb JOB_DIR PROPERTIES_JSON OUT_DIR
#
# Writes each template to OUT_DIR/<destination> (e.g. OUT_DIR/bin/cpi) and
# exits 1 with the error on stderr when a template fails.
require "erb"
require "json"
require "yaml"
require "ostruct"
require "fileutils"

class UnknownProperty < StandardError; end

class EvaluationContext
  attr_reader :name, :index

  def initialize(job_spec, manifest_properties)
    @raw_properties = {}
    (job_spec["properties"] || {}).each do |name, definition|
      value = lookup(manifest_properties, name)
      value = (definition || {})["default"] if value.nil?
      store(@raw_properties, name, value) unless value.nil?
    end
    @name = job_spec["name"]
    @index = 0
    @spec = OpenStruct.new(
      "name" => job_spec["name"], "job" => OpenStruct.new("name" => job_spec["name"]),
      "index" => 0, "id" => "00000000-0000-0000-0000-000000000000", "az" => "z1",
      "deployment" => "bosh", "bootstrap" => true, "address" => "127.0.0.1",
      "ip" => "127.0.0.1", "networks" => OpenStruct.new,
      "properties" => deep_struct(@raw_properties)
    )
  end

  def spec
    @spec
  end

  def properties
    @spec.properties
  end

  def get_binding
    binding
  end

  def p(*args)
    names = Array(args[0])
    names.each do |name|
      value = lookup(@raw_properties, name)
      return value unless value.nil?
    end
    return args[1] if args.length == 2
    raise UnknownProperty, "Can't find property '#{names.join("', '")}'"
  end

  def if_p(*names)
    values = names.map do |name|
      value = lookup(@raw_properties, name)
      return ElseBlock.new(true) if value.nil?
      value
    end
    yield(*values)
    ElseBlock.new(false)
  end

  class ElseBlock
    def initialize(active)
      @active = active
    end

    def else
      yield if @active
    end
  end

  private

  def lookup(collection, name)
    name.split(".").inject(collection) do |node, key|
      return nil unless node.is_a?(Hash) && node.key?(key)
      node[key]
    end
  end

  def store(collection, name, value)
    keys = name.split(".")
    last = keys.pop
    keys.inject(collection) { |node, key| node[key] ||= {} }[last] = value
  end

  def deep_struct(value)
    case value
    when Hash then OpenStruct.new(value.transform_values { |v| deep_struct(v) })
    when Array then value.map { |v| deep_struct(v) }
    else value
    end
  end
end

job_dir, properties_path, out_dir = ARGV
abort("usage: ruby render.rb JOB_DIR PROPERTIES_JSON OUT_DIR") unless out_dir

job_spec = YAML.safe_load(File.read(File.join(job_dir, "spec")))
properties = JSON.parse(File.read(properties_path))
begin
  (job_spec["templates"] || {}).each do |source, destination|
    context = EvaluationContext.new(job_spec, properties)
    template = ERB.new(File.read(File.join(job_dir, "templates", source)), trim_mode: "-")
    template.filename = source
    target = File.join(out_dir, destination)
    FileUtils.mkdir_p(File.dirname(target))
    File.write(target, template.result(context.get_binding))
  end
rescue StandardError => e
  warn("Error filling in template '#{e.backtrace&.first}': #{e.class}: #{e.message}")
  exit 1
end
